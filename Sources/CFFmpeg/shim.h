// FFmpeg's demuxers, decoders and colour conversion (Debian: libavformat-dev, libavcodec-dev,
// libswscale-dev, libavutil-dev).
#include <libavformat/avformat.h>
#include <libavcodec/avcodec.h>
#include <libswscale/swscale.h>
#include <libavutil/avutil.h>
#include <libavutil/display.h>
#include <libavutil/imgutils.h>
