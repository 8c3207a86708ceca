/* A hello program in plain C, so the cpp template cross-compiles it offline. */
#include <stdio.h>
#include <sys/utsname.h>

int main(void) {
    struct utsname u;
    if (uname(&u) == 0) {
        printf("hello from C on %s\n", u.machine);
    } else {
        printf("hello from C\n");
    }
    return 0;
}
