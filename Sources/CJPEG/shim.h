// libjpeg-turbo (jpeglib.h needs stdio.h for FILE first).
#include <stddef.h>
#include <stdio.h>
#include <jpeglib.h>
