// Video decoding through FFmpeg (see include/pg_video.h).
#include "pg_video.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libavutil/display.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// A video held in memory (the caller's bytes, borrowed until pg_video_close).
typedef struct {
    const uint8_t *data;
    size_t size;
    size_t position;
} pg_memory;

struct pg_video {
    AVFormatContext *format;
    AVIOContext *io;  // custom I/O over `memory` (NULL for a file)
    pg_memory memory;
    AVCodecContext *codec;
    AVPacket *packet;
    AVFrame *frame;
    struct SwsContext *sws;
    int stream;
    int flushing;  // the demuxer is exhausted: draining the decoder
    int finished;
    int has_frame;
    double rotation;
};

static void say(char *err, size_t errlen, const char *what, int code) {
    if (!err || errlen == 0) return;
    if (code < 0) {
        char reason[AV_ERROR_MAX_STRING_SIZE] = {0};
        av_strerror(code, reason, sizeof reason);
        snprintf(err, errlen, "%s: %s", what, reason);
    } else {
        snprintf(err, errlen, "%s", what);
    }
}

void pg_video_close(pg_video *v) {
    if (!v) return;
    sws_freeContext(v->sws);
    av_frame_free(&v->frame);
    av_packet_free(&v->packet);
    avcodec_free_context(&v->codec);
    avformat_close_input(&v->format);
    if (v->io) {
        av_freep(&v->io->buffer);
        avio_context_free(&v->io);
    }
    free(v);
}

static int memory_read(void *opaque, uint8_t *buffer, int wanted) {
    pg_memory *m = opaque;
    size_t left = m->size - m->position;
    if (left == 0) return AVERROR_EOF;
    size_t n = (size_t)wanted < left ? (size_t)wanted : left;
    memcpy(buffer, m->data + m->position, n);
    m->position += n;
    return (int)n;
}

static int64_t memory_seek(void *opaque, int64_t offset, int whence) {
    pg_memory *m = opaque;
    whence &= ~AVSEEK_FORCE;
    if (whence == AVSEEK_SIZE) return (int64_t)m->size;
    int64_t base;
    switch (whence) {
    case SEEK_SET: base = 0; break;
    case SEEK_CUR: base = (int64_t)m->position; break;
    case SEEK_END: base = (int64_t)m->size; break;
    default: return AVERROR(EINVAL);
    }
    if ((offset > 0 && base > INT64_MAX - offset) || base + offset < 0 || base + offset > (int64_t)m->size) return AVERROR(EINVAL);
    m->position = (size_t)(base + offset);
    return base + offset;
}

static pg_video *open_stream(pg_video *v, const char *path, char *err, size_t errlen);

pg_video *pg_video_open(const char *path, char *err, size_t errlen) {
    av_log_set_level(AV_LOG_QUIET);  // errors are reported through `err`, not printed
    pg_video *v = calloc(1, sizeof *v);
    if (!v) { say(err, errlen, "out of memory", 0); return NULL; }
    return open_stream(v, path, err, errlen);
}

pg_video *pg_video_open_memory(const uint8_t *data, size_t size, char *err, size_t errlen) {
    av_log_set_level(AV_LOG_QUIET);
    if (!data || size == 0) { say(err, errlen, "the video is empty", 0); return NULL; }
    pg_video *v = calloc(1, sizeof *v);
    if (!v) { say(err, errlen, "out of memory", 0); return NULL; }
    v->memory = (pg_memory){data, size, 0};
    const int chunk = 1 << 15;
    uint8_t *buffer = av_malloc(chunk);
    v->format = avformat_alloc_context();
    v->io = buffer ? avio_alloc_context(buffer, chunk, 0, &v->memory, memory_read, NULL, memory_seek) : NULL;
    if (!v->io || !v->format) {
        if (!v->io) av_free(buffer);
        say(err, errlen, "out of memory", 0);
        pg_video_close(v);
        return NULL;
    }
    v->format->pb = v->io;
    return open_stream(v, NULL, err, errlen);
}

/// Opens the container (a file at `path`, or the custom I/O already set on `v->format`) and its
/// best video stream's decoder; frees `v` on failure.
static pg_video *open_stream(pg_video *v, const char *path, char *err, size_t errlen) {
    // On failure avformat_open_input frees the format context (and sets it to NULL), not the I/O.
    int rc = avformat_open_input(&v->format, path, NULL, NULL);
    if (rc < 0) { say(err, errlen, "not a readable video file", rc); pg_video_close(v); return NULL; }
    rc = avformat_find_stream_info(v->format, NULL);
    if (rc < 0) { say(err, errlen, "cannot read the file's streams", rc); pg_video_close(v); return NULL; }
    const AVCodec *decoder = NULL;
    rc = av_find_best_stream(v->format, AVMEDIA_TYPE_VIDEO, -1, -1, &decoder, 0);
    if (rc == AVERROR_STREAM_NOT_FOUND) { say(err, errlen, "the file has no video stream", 0); pg_video_close(v); return NULL; }
    if (rc < 0 || !decoder) {
        say(err, errlen, rc == AVERROR_DECODER_NOT_FOUND ? "no decoder for the video stream's codec" : "cannot select the video stream", rc);
        pg_video_close(v);
        return NULL;
    }
    v->stream = rc;
    AVStream *stream = v->format->streams[v->stream];
    v->codec = avcodec_alloc_context3(decoder);
    v->packet = av_packet_alloc();
    v->frame = av_frame_alloc();
    if (!v->codec || !v->packet || !v->frame) { say(err, errlen, "out of memory", 0); pg_video_close(v); return NULL; }
    rc = avcodec_parameters_to_context(v->codec, stream->codecpar);
    if (rc >= 0) {
        v->codec->thread_count = 1;  // frames in order, the same on every machine
        rc = avcodec_open2(v->codec, decoder, NULL);
    }
    if (rc < 0) { say(err, errlen, "cannot open the video decoder", rc); pg_video_close(v); return NULL; }
    size_t size = 0;
    const uint8_t *matrix = NULL;
#if LIBAVFORMAT_VERSION_MAJOR >= 61
    const AVPacketSideData *sd = av_packet_side_data_get(stream->codecpar->coded_side_data,
                                                         stream->codecpar->nb_coded_side_data, AV_PKT_DATA_DISPLAYMATRIX);
    if (sd) { matrix = sd->data; size = sd->size; }
#else
    matrix = av_stream_get_side_data(stream, AV_PKT_DATA_DISPLAYMATRIX, &size);
#endif
    if (matrix && size >= 9 * sizeof(int32_t)) {
        double r = av_display_rotation_get((const int32_t *)matrix);
        v->rotation = isnan(r) ? 0 : r;
    }
    return v;
}

int pg_video_width(const pg_video *v) { return v->codec->width; }
int pg_video_height(const pg_video *v) { return v->codec->height; }

double pg_video_frame_rate(const pg_video *v) {
    AVRational r = v->format->streams[v->stream]->avg_frame_rate;
    return r.num > 0 && r.den > 0 ? av_q2d(r) : 0;
}

int64_t pg_video_frame_count(const pg_video *v) {
    int64_t n = v->format->streams[v->stream]->nb_frames;
    return n > 0 ? n : 0;
}

double pg_video_duration(const pg_video *v) {
    AVStream *s = v->format->streams[v->stream];
    if (s->duration > 0 && s->duration != AV_NOPTS_VALUE) return s->duration * av_q2d(s->time_base);
    if (v->format->duration > 0) return v->format->duration / (double)AV_TIME_BASE;
    return 0;
}

const char *pg_video_codec(const pg_video *v) { return v->codec->codec ? v->codec->codec->name : "unknown"; }

double pg_video_rotation(const pg_video *v) { return v->rotation; }

int pg_video_next(pg_video *v, double *time, int *width, int *height, char *err, size_t errlen) {
    v->has_frame = 0;
    if (v->finished) return 0;
    for (;;) {
        int rc = avcodec_receive_frame(v->codec, v->frame);
        if (rc >= 0) {
            int64_t pts = v->frame->best_effort_timestamp;
            AVRational base = v->format->streams[v->stream]->time_base;
            *time = pts == AV_NOPTS_VALUE ? NAN : pts * av_q2d(base);
            *width = v->frame->width;
            *height = v->frame->height;
            v->has_frame = 1;
            return 1;
        }
        if (rc == AVERROR_EOF) { v->finished = 1; return 0; }
        if (rc != AVERROR(EAGAIN)) { say(err, errlen, "cannot decode a frame", rc); return -1; }
        if (v->flushing) { v->finished = 1; return 0; }
        // The decoder wants input: the next packet of the video stream, or the end.
        for (;;) {
            rc = av_read_frame(v->format, v->packet);
            if (rc == AVERROR_EOF) {
                v->flushing = 1;
                rc = avcodec_send_packet(v->codec, NULL);
                if (rc < 0 && rc != AVERROR_EOF) { say(err, errlen, "cannot finish decoding", rc); return -1; }
                break;
            }
            if (rc < 0) { say(err, errlen, "cannot read the file (damaged or cut short?)", rc); return -1; }
            if (v->packet->stream_index != v->stream) { av_packet_unref(v->packet); continue; }
            rc = avcodec_send_packet(v->codec, v->packet);
            av_packet_unref(v->packet);
            if (rc < 0 && rc != AVERROR(EAGAIN)) { say(err, errlen, "cannot decode the stream (damaged data?)", rc); return -1; }
            break;
        }
    }
}

int pg_video_rgb(pg_video *v, uint8_t *rgb, size_t capacity, char *err, size_t errlen) {
    if (!v->has_frame) { say(err, errlen, "no decoded frame", 0); return -1; }
    AVFrame *f = v->frame;
    if (f->width <= 0 || f->height <= 0 || (size_t)f->width * (size_t)f->height * 3 > capacity) {
        say(err, errlen, "the frame does not fit the buffer", 0);
        return -1;
    }
    // swscale with PyAV's defaults for to_ndarray(format="rgb24"): bilinear, the frame's colour
    // matrix (BT.601 when unspecified) and range (limited when unspecified).
    v->sws = sws_getCachedContext(v->sws, f->width, f->height, (enum AVPixelFormat)f->format,
                                  f->width, f->height, AV_PIX_FMT_RGB24, SWS_BILINEAR, NULL, NULL, NULL);
    if (!v->sws) { say(err, errlen, "no colour conversion from the frame's pixel format to RGB", 0); return -1; }
    int space = f->colorspace == AVCOL_SPC_UNSPECIFIED || f->colorspace == AVCOL_SPC_RGB ? SWS_CS_DEFAULT : (int)f->colorspace;
    const int *coefficients = sws_getCoefficients(space);
    int full = f->color_range == AVCOL_RANGE_JPEG;
    sws_setColorspaceDetails(v->sws, coefficients, full, sws_getCoefficients(SWS_CS_DEFAULT), 1, 0, 1 << 16, 1 << 16);
    uint8_t *planes[4] = {rgb, NULL, NULL, NULL};
    int strides[4] = {f->width * 3, 0, 0, 0};
    int rows = sws_scale(v->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, planes, strides);
    if (rows != f->height) { say(err, errlen, "colour conversion failed", rows < 0 ? rows : 0); return -1; }
    return 0;
}
