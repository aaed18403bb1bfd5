/* relay_epoll.c's floor on io_uring instead of epoll: one recv in flight per
 * direction, whose completion queues the send; every submission of one turn of the
 * loop goes to the kernel in the same io_uring_enter, which also waits. Data moves
 * without a recv/send syscall each, so this measures what io_uring would save a TCP
 * proxy here. The benchmark runs it as "floor-uring-tcp" (needs liburing-dev).
 *
 *   relay_uring LISTEN_PORT UPSTREAM_PORT      (both on 127.0.0.1)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "floor.h"

enum { BUF = 16384, OP_RECV = 0, OP_SEND = 1, ACCEPT_TAG = 0 };

struct pair;
struct side {
    int fd;
    struct side *peer;
    struct pair *pair;
    char *buf; /* bytes read from this side, on their way to the peer */
    int off, len;
    int done; /* no more reads or sends for this direction */
};
struct pair {
    struct side s[2];
    int inflight; /* operations the kernel still holds (they reference the buffers) */
    int aborted;
    char bufs[2 * BUF];
};

static struct io_uring ring;

static struct io_uring_sqe *next_sqe(void) {
    struct io_uring_sqe *q = io_uring_get_sqe(&ring);
    if (!q) {
        io_uring_submit(&ring);
        q = io_uring_get_sqe(&ring);
    }
    return q;
}

static void post_recv(struct side *s) {
    struct io_uring_sqe *q = next_sqe();
    io_uring_prep_recv(q, s->fd, s->buf, BUF, 0);
    io_uring_sqe_set_data64(q, (uint64_t)(uintptr_t)s | OP_RECV);
    s->pair->inflight++;
}

static void post_send(struct side *s) {
    struct io_uring_sqe *q = next_sqe();
    io_uring_prep_send(q, s->peer->fd, s->buf + s->off, (size_t)(s->len - s->off), MSG_NOSIGNAL);
    io_uring_sqe_set_data64(q, (uint64_t)(uintptr_t)s | OP_SEND);
    s->pair->inflight++;
}

/* A failed send ends both directions: shutting both sockets down completes the
 * recv the kernel may still hold, so the pair can be freed. */
static void abort_pair(struct pair *p) {
    if (p->aborted) return;
    p->aborted = 1;
    p->s[0].done = p->s[1].done = 1;
    shutdown(p->s[0].fd, SHUT_RDWR);
    shutdown(p->s[1].fd, SHUT_RDWR);
}

static void maybe_free(struct pair *p) {
    if (p->inflight || !p->s[0].done || !p->s[1].done) return;
    close(p->s[0].fd);
    close(p->s[1].fd);
    free(p);
}

static void new_pair(int c, const struct sockaddr_in *up) {
    /* A blocking connect on loopback completes before it returns. */
    int u = socket(AF_INET, SOCK_STREAM, 0);
    struct pair *p = malloc(sizeof *p);
    if (u < 0 || !p || connect(u, (const struct sockaddr *)up, sizeof *up) != 0) {
        perror("upstream");
        close(c);
        if (u >= 0) close(u);
        free(p);
        return;
    }
    floor_no_delay(c);
    floor_no_delay(u);
    p->inflight = p->aborted = 0;
    p->s[0] = (struct side){.fd = c, .peer = &p->s[1], .pair = p, .buf = p->bufs};
    p->s[1] = (struct side){.fd = u, .peer = &p->s[0], .pair = p, .buf = p->bufs + BUF};
    post_recv(&p->s[0]);
    post_recv(&p->s[1]);
}

static void post_accept(int lfd) {
    struct io_uring_sqe *q = next_sqe();
    io_uring_prep_multishot_accept(q, lfd, NULL, NULL, 0);
    io_uring_sqe_set_data64(q, ACCEPT_TAG);
}

static void on_completion(int lfd, const struct sockaddr_in *up, uint64_t tag, int res, unsigned flags) {
    if (tag == ACCEPT_TAG) {
        if (res >= 0) new_pair(res, up);
        if (!(flags & IORING_CQE_F_MORE)) post_accept(lfd);
        return;
    }
    struct side *s = (struct side *)(uintptr_t)(tag & ~(uint64_t)1);
    struct pair *p = s->pair;
    p->inflight--;
    if (p->aborted) {
        maybe_free(p);
        return;
    }
    if ((tag & 1) == OP_RECV) {
        if (res > 0) {
            s->off = 0;
            s->len = res;
            post_send(s);
        } else if (res == 0) { /* FIN: pass it on */
            shutdown(s->peer->fd, SHUT_WR);
            s->done = 1;
        } else {
            abort_pair(p);
        }
    } else if (res < 0) {
        abort_pair(p);
    } else {
        s->off += res;
        if (s->off < s->len) post_send(s);
        else post_recv(s);
    }
    maybe_free(p);
}

int main(int argc, char **argv) {
    struct sockaddr_in up;
    int lfd = floor_listen(argc, argv, 0, &up);
    /* Completions run when this thread enters the kernel anyway (COOP_TASKRUN)
     * rather than interrupting it; one thread submits (SINGLE_ISSUER). */
    int r = io_uring_queue_init(4096, &ring, IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER);
    if (r < 0) {
        /* EPERM under a seccomp profile that forbids io_uring (RuntimeDefault in
         * containerd >= 2.0 and Docker >= 25). */
        fprintf(stderr, "io_uring_queue_init: %s\n", strerror(-r));
        return 1;
    }
    post_accept(lfd);
    for (;;) {
        r = io_uring_submit_and_wait(&ring, 1);
        if (r < 0 && r != -EINTR) {
            fprintf(stderr, "io_uring_submit_and_wait: %s\n", strerror(-r));
            return 1;
        }
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            seen++;
            on_completion(lfd, &up, cqe->user_data, cqe->res, cqe->flags);
        }
        io_uring_cq_advance(&ring, seen);
    }
}
