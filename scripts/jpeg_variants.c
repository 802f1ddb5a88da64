// Fixture helper for scripts/make_image_fixtures.py: writes JPEG variants that Pillow
// cannot produce (restart markers, YCCK, Adobe RGB), using the system libjpeg-turbo.
// Build: cc -O2 -o jpeg_variants jpeg_variants.c -ljpeg
// Usage: jpeg_variants MODE WIDTH HEIGHT IN.raw OUT.jpg
//   MODE: restart-rgb | restart-gray | restart-progressive | ycck | adobe-rgb
//   IN.raw holds WIDTH*HEIGHT*components bytes (gray 1, RGB 3, CMYK 4).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s MODE WIDTH HEIGHT IN.raw OUT.jpg\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    int width = atoi(argv[2]), height = atoi(argv[3]);
    int components = 3;
    J_COLOR_SPACE in_space = JCS_RGB;
    if (strcmp(mode, "restart-gray") == 0) {
        components = 1;
        in_space = JCS_GRAYSCALE;
    } else if (strcmp(mode, "ycck") == 0) {
        components = 4;
        in_space = JCS_CMYK;
    }
    size_t size = (size_t)width * height * components;
    unsigned char *pixels = malloc(size);
    FILE *in = fopen(argv[4], "rb");
    if (!pixels || !in || fread(pixels, 1, size, in) != size) {
        fprintf(stderr, "cannot read %s\n", argv[4]);
        return 1;
    }
    fclose(in);
    FILE *out = fopen(argv[5], "wb");
    if (!out) {
        return 1;
    }

    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr jerr;
    cinfo.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, out);
    cinfo.image_width = width;
    cinfo.image_height = height;
    cinfo.input_components = components;
    cinfo.in_color_space = in_space;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, 88, TRUE);
    if (strncmp(mode, "restart", 7) == 0) {
        cinfo.restart_in_rows = 1;  // a restart marker after every MCU row
    }
    if (strcmp(mode, "restart-progressive") == 0) {
        jpeg_simple_progression(&cinfo);
        cinfo.restart_interval = 3;  // every 3 MCUs
        cinfo.restart_in_rows = 0;
    }
    if (strcmp(mode, "ycck") == 0) {
        jpeg_set_colorspace(&cinfo, JCS_YCCK);  // writes an Adobe marker, transform 2
    }
    if (strcmp(mode, "adobe-rgb") == 0) {
        jpeg_set_colorspace(&cinfo, JCS_RGB);  // no YCbCr transform, Adobe marker transform 0
        cinfo.write_Adobe_marker = TRUE;
    }
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = pixels + (size_t)cinfo.next_scanline * width * components;
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    fclose(out);
    free(pixels);
    return 0;
}
