/* LD_PRELOAD shim for the Janus bench: clears IFF_LOOPBACK from getifaddrs() results.
 *
 * Janus (and libnice) skip interfaces flagged as loopback when gathering ICE host
 * candidates, even with ice_enforce_list = "lo" (FACTS.md), so on a loopback-only bench
 * its answers carry no usable candidate. Hiding the flag makes it gather 127.0.0.1.
 * Built by bench/janus_sfu.py into a temporary directory: never commit the binary.
 *
 *   gcc -shared -fPIC -O2 -o /tmp/getifaddrs_shim.so getifaddrs_shim.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stddef.h>

int getifaddrs(struct ifaddrs **ifap)
{
    static int (*real_getifaddrs)(struct ifaddrs **);
    if (!real_getifaddrs)
        real_getifaddrs = (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
    int rc = real_getifaddrs(ifap);
    if (rc == 0)
        for (struct ifaddrs *i = *ifap; i != NULL; i = i->ifa_next)
            i->ifa_flags &= ~IFF_LOOPBACK;
    return rc;
}
