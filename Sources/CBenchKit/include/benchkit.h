#ifndef BENCHKIT_H
#define BENCHKIT_H
#include <stddef.h>
/* Placeholder; the bench issue fills this in. */
int benchkit_version(void);
#endif
