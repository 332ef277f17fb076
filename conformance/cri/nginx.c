/* A stand-in for the nginx and httpd images critest pulls (no registry is reachable here):
 * a process named nginx (or httpd) that writes /var/run/nginx.pid, logs that it listens,
 * and answers every HTTP request with 200. Usage: nginx [ARG...]: the first all-digit ARG
 * is the port (80 by default); the
 * images pass "master process" too, which a spec looks for in /proc/1/cmdline as nginx
 * writes it there. Built with gcc -static by conformance/cri. */
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void done(int sig) { (void)sig; _exit(0); }

static int port(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strspn(argv[i], "0123456789") == strlen(argv[i]) && argv[i][0])
            return atoi(argv[i]);
    return 80;
}

int main(int argc, char **argv) {
    static const char page[] = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                               "Content-Length: 36\r\nConnection: close\r\n\r\n"
                               "<html>Welcome to nginx!</html>\r\n\r\n\r\n";
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port(argc, argv))};
    int one = 1, srv = socket(AF_INET, SOCK_STREAM, 0);
    signal(SIGTERM, done);
    signal(SIGINT, done);
    setsockopt(srv, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(srv, (struct sockaddr *)&addr, sizeof addr) || listen(srv, 16)) {
        perror("nginx: listen");
        return 1;
    }
    const char *name = strrchr(argv[0], '/');
    fprintf(stderr, "%s: listening on port %d\n", name ? name + 1 : argv[0], port(argc, argv));
    FILE *pid = fopen("/var/run/nginx.pid", "w");
    if (pid) {
        fprintf(pid, "%d\n", getpid());
        fclose(pid);
    }
    for (;;) {
        char buf[4096];
        int c = accept(srv, 0, 0);
        if (c < 0)
            continue;
        if (read(c, buf, sizeof buf) > 0)
            write(c, page, sizeof page - 1);
        close(c);
    }
}
