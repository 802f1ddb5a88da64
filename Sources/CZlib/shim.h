// System zlib, for deflated members of .npz archives (raw inflate).
#include <zlib.h>
