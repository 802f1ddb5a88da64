#include "pg_kernels.h"
int pg_placeholder(void) { return 0; }
