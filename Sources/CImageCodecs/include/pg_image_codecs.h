// C glue for PaliGemmaImage: libjpeg-turbo and libpng calls (their error handling
// longjmps, which Swift cannot survive), plus the fixed-point resampling kernels.
//
// Every codec function returns 0 on success or a nonzero code on failure, with a
// human-readable message written into `err` (always NUL-terminated).
#ifndef PG_IMAGE_CODECS_H
#define PG_IMAGE_CODECS_H

#include <stddef.h>
#include <stdint.h>

#define PGC_ERRLEN 256

enum {
    PGC_OK = 0,
    PGC_ERR_CORRUPT = 1,      // the codec library rejected the data
    PGC_ERR_TRUNCATED = 2,    // data ended before the image did
    PGC_ERR_UNSUPPORTED = 3,  // valid file, but a variant we do not decode
    PGC_ERR_MEMORY = 4,       // allocation failed or size overflow
};

// ---------------------------------------------------------------- JPEG

typedef struct pgc_jpeg_info {
    int width;
    int height;
    /// Components in the file (1, 3 or 4) and therefore in the decoded output:
    /// 1 = grayscale, 3 = RGB (libjpeg converts YCbCr), 4 = CMYK as stored
    /// (Adobe CMYK is inverted; YCCK is converted to that CMYK by libjpeg).
    int components;
    /// libjpeg's J_COLOR_SPACE of the file, for diagnostics.
    int color_space;
    int progressive;
    /// Nonzero when an Adobe APP14 marker is present.
    int saw_adobe;
} pgc_jpeg_info;

int pgc_jpeg_read_info(const uint8_t *data, size_t size, pgc_jpeg_info *info, char *err);

/// Decodes into `out` (width * height * components bytes, rows packed).
int pgc_jpeg_decode(const uint8_t *data, size_t size, uint8_t *out, size_t out_size, char *err);

// ---------------------------------------------------------------- PNG

typedef struct pgc_png_info {
    int width;
    int height;
    int bit_depth;   // 1, 2, 4, 8 or 16
    int color_type;  // PNG color type: 0 gray, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA
    int channels;    // samples per pixel in the decoded output (1, 2, 3 or 4)
    int interlaced;
    int num_palette;
    uint8_t palette[256 * 3];
    /// tRNS: for palette images, `num_trans` alpha entries; for gray/RGB images,
    /// `has_trans_color` and the raw sample values (in the file's bit depth).
    int num_trans;
    uint8_t trans_alpha[256];
    int has_trans_color;
    uint16_t trans_gray;
    uint16_t trans_red;
    uint16_t trans_green;
    uint16_t trans_blue;
} pgc_png_info;

int pgc_png_read_info(const uint8_t *data, size_t size, pgc_png_info *info, char *err);

/// Decodes raw samples, de-interlaced, rows packed: one byte per sample for bit depths
/// up to 8 (values NOT scaled, e.g. 0...3 for 2-bit), two bytes big-endian for 16-bit.
int pgc_png_decode(const uint8_t *data, size_t size, uint8_t *out, size_t out_size, char *err);

/// Encodes 8-bit pixels (channels: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) as PNG into a
/// malloc'ed buffer that the caller frees with pgc_free.
int pgc_png_encode(const uint8_t *pixels, int width, int height, int channels,
                   uint8_t **out, size_t *out_size, char *err);

void pgc_free(void *p);

// ---------------------------------------------------------------- Resampling
//
// Pillow's 8-bit two-pass convolution (Resample.c): coefficients are fixed point with
// 22 fractional bits, accumulated in int32 starting from 1 << 21, and clipped to
// uint8 after each pass. `bounds` holds (first, count) per output sample and
// `coeffs` holds `ksize` coefficients per output sample.

/// Horizontal pass over interleaved rows with `channels` bytes per pixel:
/// rows [row_begin, row_end) of `out` are computed from rows offset+row of `in`.
void pgc_resample_horizontal(const uint8_t *in, size_t in_stride, uint8_t *out, size_t out_stride,
                             int out_width, int channels, int row_offset, int row_begin, int row_end,
                             const int32_t *bounds, const int32_t *coeffs, int ksize);

/// Vertical pass: output rows [row_begin, row_end), each `row_bytes` wide.
void pgc_resample_vertical(const uint8_t *in, size_t in_stride, uint8_t *out, size_t out_stride,
                           size_t row_bytes, int row_begin, int row_end,
                           const int32_t *bounds, const int32_t *coeffs, int ksize);

#endif
