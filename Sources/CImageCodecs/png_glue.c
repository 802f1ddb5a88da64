// libpng glue with setjmp/longjmp error handling, reading from and writing to memory.
//
// Decoding asks libpng for raw samples only (packing of 1/2/4-bit pixels into bytes and
// de-interlacing); every colour conversion happens in Swift, following Pillow.
#include "pg_image_codecs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

// All state that changes after setjmp lives here, in memory, not in locals.
typedef struct {
    const uint8_t *data;
    size_t size;
    size_t pos;
    int truncated;
    char *err;
    png_bytep *rows;
} pgc_png_reader;

static void pgc_png_error(png_structp png, png_const_charp message) {
    pgc_png_reader *r = (pgc_png_reader *)png_get_error_ptr(png);
    if (r->err[0] == 0) {
        snprintf(r->err, PGC_ERRLEN, "%s", message);
    }
    png_longjmp(png, 1);
}

static void pgc_png_warning(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;  // never print to stderr
}

static void pgc_png_read_data(png_structp png, png_bytep out, size_t length) {
    pgc_png_reader *r = (pgc_png_reader *)png_get_io_ptr(png);
    if (length > r->size - r->pos) {
        r->truncated = 1;
        snprintf(r->err, PGC_ERRLEN, "PNG data is truncated (needed %zu bytes at offset %zu of %zu)",
                 length, r->pos, r->size);
        png_error(png, "truncated");
    }
    memcpy(out, r->data + r->pos, length);
    r->pos += length;
}

static png_structp pgc_png_create_reader(pgc_png_reader *r, const uint8_t *data, size_t size,
                                         char *err) {
    memset(r, 0, sizeof(*r));
    r->data = data;
    r->size = size;
    r->err = err;
    err[0] = 0;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, r, pgc_png_error, pgc_png_warning);
    if (png != NULL) {
        png_set_read_fn(png, r, pgc_png_read_data);
    }
    return png;
}

/// Reads up to and including the header chunks, with the same lenient settings for
/// both the info and the decode pass.
static void pgc_png_begin(png_structp png, png_infop info) {
    // Pillow has no per-dimension limit; the caller enforces a pixel budget instead.
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_set_benign_errors(png, 1);
    // CRC errors in critical chunks stay fatal (libpng's default). Pillow checks the CRCs
    // of chunks before the image data but not of IDAT, so a file with only a damaged
    // IDAT checksum loads there and is rejected here.
    png_read_info(png, info);
}

static int pgc_png_fail(pgc_png_reader *r) {
    return r->truncated ? PGC_ERR_TRUNCATED : PGC_ERR_CORRUPT;
}

/// Creates the read and info structs for `data` (no longjmp can happen here, so this may live
/// outside the functions that hold the setjmp).
static int pgc_png_open(pgc_png_reader *r, const uint8_t *data, size_t size, char *err, png_structp *png_out,
                        png_infop *info_out) {
    png_structp png = pgc_png_create_reader(r, data, size, err);
    if (png == NULL) {
        snprintf(err, PGC_ERRLEN, "cannot create PNG reader");
        return PGC_ERR_MEMORY;
    }
    png_infop info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_read_struct(&png, NULL, NULL);
        snprintf(err, PGC_ERRLEN, "cannot create PNG info");
        return PGC_ERR_MEMORY;
    }
    *png_out = png;
    *info_out = info;
    return PGC_OK;
}

int pgc_png_read_info(const uint8_t *data, size_t size, pgc_png_info *out, char *err) {
    pgc_png_reader r;
    memset(out, 0, sizeof(*out));
    png_structp png;
    png_infop info;
    int rc = pgc_png_open(&r, data, size, err, &png, &info);
    if (rc != PGC_OK) return rc;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        return pgc_png_fail(&r);
    }
    pgc_png_begin(png, info);

    out->width = (int)png_get_image_width(png, info);
    out->height = (int)png_get_image_height(png, info);
    out->bit_depth = png_get_bit_depth(png, info);
    out->color_type = png_get_color_type(png, info);
    out->channels = png_get_channels(png, info);
    out->interlaced = png_get_interlace_type(png, info) != PNG_INTERLACE_NONE;

    png_colorp palette = NULL;
    int num_palette = 0;
    if (png_get_PLTE(png, info, &palette, &num_palette) && palette != NULL) {
        if (num_palette > 256) {
            num_palette = 256;
        }
        out->num_palette = num_palette;
        for (int i = 0; i < num_palette; i++) {
            out->palette[i * 3 + 0] = palette[i].red;
            out->palette[i * 3 + 1] = palette[i].green;
            out->palette[i * 3 + 2] = palette[i].blue;
        }
    }
    png_bytep trans_alpha = NULL;
    int num_trans = 0;
    png_color_16p trans_color = NULL;
    if (png_get_tRNS(png, info, &trans_alpha, &num_trans, &trans_color)) {
        if (out->color_type == PNG_COLOR_TYPE_PALETTE && trans_alpha != NULL) {
            if (num_trans > 256) {
                num_trans = 256;
            }
            out->num_trans = num_trans;
            memcpy(out->trans_alpha, trans_alpha, (size_t)num_trans);
        } else if (trans_color != NULL) {
            out->has_trans_color = 1;
            out->trans_gray = trans_color->gray;
            out->trans_red = trans_color->red;
            out->trans_green = trans_color->green;
            out->trans_blue = trans_color->blue;
        }
    }
    png_destroy_read_struct(&png, &info, NULL);
    return PGC_OK;
}

int pgc_png_decode(const uint8_t *data, size_t size, uint8_t *out, size_t out_size, char *err) {
    pgc_png_reader r;
    png_structp png;
    png_infop info;
    int rc = pgc_png_open(&r, data, size, err, &png, &info);
    if (rc != PGC_OK) return rc;
    if (setjmp(png_jmpbuf(png))) {
        free(r.rows);
        png_destroy_read_struct(&png, &info, NULL);
        return pgc_png_fail(&r);
    }
    pgc_png_begin(png, info);
    if (png_get_bit_depth(png, info) < 8) {
        png_set_packing(png);  // one byte per sample, values unscaled
    }
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    size_t height = png_get_image_height(png, info);
    size_t row_bytes = png_get_rowbytes(png, info);
    if (row_bytes == 0 || height == 0 || out_size / row_bytes < height) {
        snprintf(err, PGC_ERRLEN, "output buffer too small for PNG rows");
        png_destroy_read_struct(&png, &info, NULL);
        return PGC_ERR_MEMORY;
    }
    r.rows = malloc(height * sizeof(png_bytep));
    if (r.rows == NULL) {
        snprintf(err, PGC_ERRLEN, "out of memory for PNG row pointers");
        png_destroy_read_struct(&png, &info, NULL);
        return PGC_ERR_MEMORY;
    }
    for (size_t y = 0; y < height; y++) {
        r.rows[y] = out + y * row_bytes;
    }
    png_read_image(png, r.rows);
    // The trailing chunks (after the image data) are not read: like Pillow, a file
    // whose pixels are complete loads even when IEND is missing.
    free(r.rows);
    r.rows = NULL;
    png_destroy_read_struct(&png, &info, NULL);
    return PGC_OK;
}

// ---------------------------------------------------------------- writing

typedef struct {
    uint8_t *buffer;
    size_t size;
    size_t capacity;
    int out_of_memory;
    char *err;
} pgc_png_writer;

static void pgc_png_write_error(png_structp png, png_const_charp message) {
    pgc_png_writer *w = (pgc_png_writer *)png_get_error_ptr(png);
    if (w->err[0] == 0) {
        snprintf(w->err, PGC_ERRLEN, "%s", message);
    }
    png_longjmp(png, 1);
}

static void pgc_png_write_data(png_structp png, png_bytep data, size_t length) {
    pgc_png_writer *w = (pgc_png_writer *)png_get_io_ptr(png);
    if (length > w->capacity - w->size) {
        size_t capacity = w->capacity < 4096 ? 4096 : w->capacity;
        while (length > capacity - w->size) {
            if (capacity > SIZE_MAX / 2) {
                w->out_of_memory = 1;
                png_error(png, "PNG output too large");
            }
            capacity *= 2;
        }
        uint8_t *grown = realloc(w->buffer, capacity);
        if (grown == NULL) {
            w->out_of_memory = 1;
            png_error(png, "out of memory while writing PNG");
        }
        w->buffer = grown;
        w->capacity = capacity;
    }
    memcpy(w->buffer + w->size, data, length);
    w->size += length;
}

static void pgc_png_flush(png_structp png) {
    (void)png;
}

int pgc_png_encode(const uint8_t *pixels, int width, int height, int channels, uint8_t **out,
                   size_t *out_size, char *err) {
    *out = NULL;
    *out_size = 0;
    err[0] = 0;
    int color_type;
    switch (channels) {
        case 1: color_type = PNG_COLOR_TYPE_GRAY; break;
        case 2: color_type = PNG_COLOR_TYPE_GRAY_ALPHA; break;
        case 3: color_type = PNG_COLOR_TYPE_RGB; break;
        case 4: color_type = PNG_COLOR_TYPE_RGB_ALPHA; break;
        default:
            snprintf(err, PGC_ERRLEN, "cannot write PNG with %d channels", channels);
            return PGC_ERR_UNSUPPORTED;
    }
    if (width <= 0 || height <= 0) {
        snprintf(err, PGC_ERRLEN, "cannot write a %dx%d PNG", width, height);
        return PGC_ERR_UNSUPPORTED;
    }
    pgc_png_writer w;
    memset(&w, 0, sizeof(w));
    w.err = err;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &w, pgc_png_write_error, pgc_png_warning);
    if (png == NULL) {
        snprintf(err, PGC_ERRLEN, "cannot create PNG writer");
        return PGC_ERR_MEMORY;
    }
    png_infop info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_write_struct(&png, NULL);
        snprintf(err, PGC_ERRLEN, "cannot create PNG info");
        return PGC_ERR_MEMORY;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(w.buffer);
        return w.out_of_memory ? PGC_ERR_MEMORY : PGC_ERR_CORRUPT;
    }
    png_set_write_fn(png, &w, pgc_png_write_data, pgc_png_flush);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, color_type, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t row_bytes = (size_t)width * (size_t)channels;
    for (int y = 0; y < height; y++) {
        png_write_row(png, pixels + (size_t)y * row_bytes);
    }
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    *out = w.buffer;
    *out_size = w.size;
    return PGC_OK;
}

void pgc_free(void *p) {
    free(p);
}
