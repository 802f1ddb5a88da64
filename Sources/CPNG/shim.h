// libpng 1.6 (brings zlib with it).
#include <png.h>
