// libjpeg-turbo glue with setjmp/longjmp error handling.
//
// Settings mirror Pillow's JpegDecode.c for a file opened with Image.open(): libjpeg's
// defaults (ISLOW IDCT, fancy upsampling), the source colour space guessed by libjpeg,
// and an output colour space chosen from the number of components: 1 -> grayscale,
// 3 -> RGB, 4 -> CMYK (as stored; Pillow then inverts Adobe CMYK).
#include "pg_image_codecs.h"

#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int eof_warning;  // libjpeg ran out of data and inserted a fake EOI
    char *err;
} pgc_jpeg_error;

static void pgc_jpeg_error_exit(j_common_ptr cinfo) {
    pgc_jpeg_error *e = (pgc_jpeg_error *)cinfo->err;
    char buffer[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, buffer);
    snprintf(e->err, PGC_ERRLEN, "%s", buffer);
    longjmp(e->jump, 1);
}

static void pgc_jpeg_emit_message(j_common_ptr cinfo, int level) {
    // Warnings (level -1) about corrupt data are ignored, as Pillow does; running out of
    // data is remembered so the caller can report a truncated file.
    if (level < 0) {
        pgc_jpeg_error *e = (pgc_jpeg_error *)cinfo->err;
        if (cinfo->err->msg_code == JWRN_JPEG_EOF) {
            e->eof_warning = 1;
        }
        cinfo->err->num_warnings++;
    }
}

static void pgc_jpeg_output_message(j_common_ptr cinfo) {
    (void)cinfo;  // never print to stderr
}

static void pgc_jpeg_setup(struct jpeg_decompress_struct *cinfo, pgc_jpeg_error *jerr, char *err) {
    memset(jerr, 0, sizeof(*jerr));
    cinfo->err = jpeg_std_error(&jerr->pub);
    jerr->pub.error_exit = pgc_jpeg_error_exit;
    jerr->pub.emit_message = pgc_jpeg_emit_message;
    jerr->pub.output_message = pgc_jpeg_output_message;
    jerr->err = err;
}

static int pgc_jpeg_check_size(const uint8_t *data, size_t size, char *err) {
    if (data == NULL || size < 4) {
        snprintf(err, PGC_ERRLEN, "file too short to be a JPEG (%zu bytes)", size);
        return PGC_ERR_TRUNCATED;
    }
    if (size > (size_t)0xFFFFFFFFu) {
        snprintf(err, PGC_ERRLEN, "JPEG data larger than 4 GiB");
        return PGC_ERR_UNSUPPORTED;
    }
    return PGC_OK;
}

int pgc_jpeg_read_info(const uint8_t *data, size_t size, pgc_jpeg_info *info, char *err) {
    struct jpeg_decompress_struct cinfo;
    pgc_jpeg_error jerr;
    err[0] = 0;
    memset(info, 0, sizeof(*info));
    int rc = pgc_jpeg_check_size(data, size, err);
    if (rc != PGC_OK) {
        return rc;
    }
    pgc_jpeg_setup(&cinfo, &jerr, err);
    if (setjmp(jerr.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return jerr.eof_warning ? PGC_ERR_TRUNCATED : PGC_ERR_CORRUPT;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    if (jerr.eof_warning) {
        snprintf(err, PGC_ERRLEN, "JPEG header is truncated");
        jpeg_destroy_decompress(&cinfo);
        return PGC_ERR_TRUNCATED;
    }
    info->width = (int)cinfo.image_width;
    info->height = (int)cinfo.image_height;
    info->components = cinfo.num_components;
    info->color_space = (int)cinfo.jpeg_color_space;
    info->progressive = cinfo.progressive_mode ? 1 : 0;
    info->saw_adobe = cinfo.saw_Adobe_marker ? 1 : 0;
    jpeg_destroy_decompress(&cinfo);
    if (info->components != 1 && info->components != 3 && info->components != 4) {
        snprintf(err, PGC_ERRLEN, "cannot handle %d-component JPEG images", info->components);
        return PGC_ERR_UNSUPPORTED;
    }
    return PGC_OK;
}

int pgc_jpeg_decode(const uint8_t *data, size_t size, uint8_t *out, size_t out_size, char *err) {
    struct jpeg_decompress_struct cinfo;
    pgc_jpeg_error jerr;
    err[0] = 0;
    int rc = pgc_jpeg_check_size(data, size, err);
    if (rc != PGC_OK) {
        return rc;
    }
    pgc_jpeg_setup(&cinfo, &jerr, err);
    if (setjmp(jerr.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return jerr.eof_warning ? PGC_ERR_TRUNCATED : PGC_ERR_CORRUPT;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);

    switch (cinfo.num_components) {
        case 1: cinfo.out_color_space = JCS_GRAYSCALE; break;
        case 3: cinfo.out_color_space = JCS_RGB; break;
        case 4: cinfo.out_color_space = JCS_CMYK; break;
        default:
            snprintf(err, PGC_ERRLEN, "cannot handle %d-component JPEG images", cinfo.num_components);
            jpeg_destroy_decompress(&cinfo);
            return PGC_ERR_UNSUPPORTED;
    }
    jpeg_start_decompress(&cinfo);

    size_t row_bytes = (size_t)cinfo.output_width * (size_t)cinfo.output_components;
    if (row_bytes == 0 || out_size / row_bytes < (size_t)cinfo.output_height) {
        snprintf(err, PGC_ERRLEN, "output buffer too small for %ux%u JPEG", cinfo.output_width,
                 cinfo.output_height);
        jpeg_destroy_decompress(&cinfo);
        return PGC_ERR_MEMORY;
    }

    // Row pointers come from libjpeg's image pool, so a longjmp cannot leak them.
    enum { batch = 16 };
    JSAMPARRAY rows = (*cinfo.mem->alloc_small)((j_common_ptr)&cinfo, JPOOL_IMAGE, batch * sizeof(JSAMPROW));
    while (cinfo.output_scanline < cinfo.output_height) {
        JDIMENSION start = cinfo.output_scanline;
        JDIMENSION count = cinfo.output_height - start;
        if (count > batch) {
            count = batch;
        }
        for (JDIMENSION i = 0; i < count; i++) {
            rows[i] = out + (size_t)(start + i) * row_bytes;
        }
        if (jpeg_read_scanlines(&cinfo, rows, count) == 0) {
            break;
        }
    }
    // Running out of data while reading scanlines means a truncated file. (libjpeg reads
    // ahead to the next marker, so a file missing only its EOI lands here too; Pillow
    // also reports such files as truncated.)
    if (jerr.eof_warning) {
        snprintf(err, PGC_ERRLEN, "JPEG data is truncated (premature end of data)");
        jpeg_destroy_decompress(&cinfo);
        return PGC_ERR_TRUNCATED;
    }
    if (cinfo.output_scanline < cinfo.output_height) {
        snprintf(err, PGC_ERRLEN, "JPEG decoding stopped at row %u of %u", cinfo.output_scanline,
                 cinfo.output_height);
        jpeg_destroy_decompress(&cinfo);
        return PGC_ERR_CORRUPT;
    }
    jpeg_abort_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return PGC_OK;
}
