/* The pod sandbox's pause process: holds the pod's namespaces, reaps zombies (it is PID 1
 * of the pod when the pod shares its PID namespace) and exits 0 on TERM or INT. Built with
 * gcc -static by conformance/cri, as the Kubernetes pause image's own pause.c is. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void done(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, 0, WNOHANG) > 0) {}
}

int main(void) {
    struct sigaction term = {.sa_handler = done}, chld = {.sa_handler = reap,
                                                          .sa_flags = SA_NOCLDSTOP};
    sigaction(SIGTERM, &term, 0);
    sigaction(SIGINT, &term, 0);
    sigaction(SIGCHLD, &chld, 0);
    for (;;)
        pause();
}
