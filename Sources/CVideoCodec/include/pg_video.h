#ifndef PG_VIDEO_H
#define PG_VIDEO_H

#include <stddef.h>
#include <stdint.h>

// Video files decoded frame by frame with FFmpeg: the file's best video stream, every frame in
// the order the decoder outputs them (presentation order), each convertible to packed RGB24.
// Errors are returned as negative codes with a message in `err` (NUL-terminated).

typedef struct pg_video pg_video;

/// Opens `path` and its best video stream's decoder. NULL on failure, with the reason in `err`.
pg_video *pg_video_open(const char *path, char *err, size_t errlen);
/// The same for a video held in memory: `data` (`size` bytes) is borrowed, and must stay
/// unchanged until `pg_video_close`.
pg_video *pg_video_open_memory(const uint8_t *data, size_t size, char *err, size_t errlen);
void pg_video_close(pg_video *v);

/// Coded width and height of the stream (frames may differ; `pg_video_next` reports each).
int pg_video_width(const pg_video *v);
int pg_video_height(const pg_video *v);
/// The stream's average frame rate (0 when unknown), its frame count from the container (0 when
/// not stored), its duration in seconds (0 when unknown), the codec's name and the rotation the
/// display matrix asks for (degrees counter-clockwise, 0 without one).
double pg_video_frame_rate(const pg_video *v);
int64_t pg_video_frame_count(const pg_video *v);
double pg_video_duration(const pg_video *v);
const char *pg_video_codec(const pg_video *v);
double pg_video_rotation(const pg_video *v);

/// Decodes the next frame. Returns 1 with a frame (its presentation time in seconds in `*time`,
/// NaN when it has none; its size in `*width` and `*height`), 0 at the end of the stream, or a
/// negative code with the reason in `err` (a damaged or truncated stream).
int pg_video_next(pg_video *v, double *time, int *width, int *height, char *err, size_t errlen);

/// The last frame `pg_video_next` returned, as packed RGB24 (width * height * 3 bytes) into `rgb`
/// (full size: no scaling), converted by swscale with exact (bit-accurate) rounding. Returns 0, or
/// a negative code with the reason in `err`.
int pg_video_rgb(pg_video *v, uint8_t *rgb, size_t capacity, char *err, size_t errlen);

#endif
