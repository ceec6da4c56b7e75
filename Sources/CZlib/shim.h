// The system zlib (Debian: zlib1g-dev provides /usr/include/zlib.h and libz.so).
#include <zlib.h>

// inflateInit2 is a macro (it passes ZLIB_VERSION and sizeof(z_stream)), which Swift cannot call.
static inline int kneuron_inflateInit2(z_streamp strm, int windowBits) {
    return inflateInit2(strm, windowBits);
}
