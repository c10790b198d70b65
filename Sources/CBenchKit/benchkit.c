#include "benchkit.h"
int benchkit_version(void) { return 1; }
