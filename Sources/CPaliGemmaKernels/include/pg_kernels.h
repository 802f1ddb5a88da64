#ifndef PG_KERNELS_H
#define PG_KERNELS_H
int pg_placeholder(void);
#endif
