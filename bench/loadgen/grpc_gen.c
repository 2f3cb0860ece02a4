/*
 * The gRPC load generator of bench:grpc and bench:audit: sends pre-encoded hyok.v1 gRPC
 * frames to the daemon over HTTP/2 (libnghttp2) on mutual TLS (OpenSSL) and counts what
 * comes back, at a few microseconds of CPU per call, so that on a small machine it takes
 * little of the CPU the server under test needs. The same semantics as the node:http2
 * generator (bench/loadgen/worker.ts + run.ts), which stays as HYOKD_BENCH_GENERATOR=node.
 *
 * Started by bench/loadgen/run.ts; every setting comes from argv, no secrets (PEM files by
 * path, written 0600 by the coordinator):
 *   --port N --ca FILE --cert FILE --key FILE     the daemon on 127.0.0.1 (SNI localhost)
 *   --path /hyok.v1.Hyok/Unwrap --kind echo|unary|batch|stream
 *   --frames FILE        records of u32 big-endian length + one whole gRPC frame each
 *   --threads N          threads, each with its own epoll loop and connections (1)
 *   --connections N      connections per thread (1)
 *   --concurrency N      closed loop: calls in flight per connection; stream: messages in
 *                        flight on the connection's one bidi stream (1)
 *   --mode closed|open   open: calls start on a fixed schedule (closed)
 *   --rate R             open: calls per second, all threads together
 *   --max-outstanding N  open: a scheduled call is skipped (and counted) while a thread
 *                        has N calls outstanding (1000)
 *   --tick-us N          open: wake every N us and start the calls whose slots have come,
 *                        each timed from its slot (0 = wake for every slot) (0)
 *   --warmup-ms N --measure-ms N   the measured window is [go + warmup, + measure)
 *   --deadline-ms N      grpc-timeout of each echo/unary/batch call, 0 = none (0)
 *   --capture-every N --max-captures N   keep the 1st counted response, then every N-th,
 *                        at most N per thread (1, 0)
 * A bad argument: message on stderr, exit 2.
 *
 * Protocol with the coordinator: connects and handshakes everything (TLS, ALPN h2, the
 * server's SETTINGS), prints "ready", reads "go <epoch-ms>" (CLOCK_REALTIME milliseconds,
 * may be fractional) from stdin, starts the load at that instant, stops starting calls at
 * the end of the window, waits up to 5 s for outstanding calls, closes the connections and
 * prints one JSON line: calls, okItems, failedItems, nonOk {status: n}, transportErrors,
 * skipped, abandoned, histogram [[us, n]...] (latency of counted calls, log-linear buckets
 * under 0.4% error) and captures [{frame, hex}] (response messages without the gRPC
 * prefix), then exits when stdin reaches its end: the coordinator reads this process's
 * CPU time at the end of the window, and it must still be there then. Anything that
 * prevents the run (connect, handshake, ALPN): stderr, exit 1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* nghttp2 1.60 deprecated the ssize_t API in favour of nghttp2_ssize twins. */
#if NGHTTP2_VERSION_NUM >= 0x013c00
typedef nghttp2_ssize h2_ssize;
typedef nghttp2_data_provider2 h2_data_provider;
#define h2_mem_send nghttp2_session_mem_send2
#define h2_mem_recv nghttp2_session_mem_recv2
#define h2_submit_request nghttp2_submit_request2
#else
typedef ssize_t h2_ssize;
typedef nghttp2_data_provider h2_data_provider;
#define h2_mem_send nghttp2_session_mem_send
#define h2_mem_recv nghttp2_session_mem_recv
#define h2_submit_request nghttp2_submit_request
#endif

enum { MAX_THREADS = 64, MAX_CONNECTIONS = 256, MAX_STATUSES = 32 };
/* Flow control must never be what limits a run: both windows far above what is in flight. */
enum { WINDOW = 16 << 20 };
/* A response message longer than this is treated as a broken stream, not buffered. */
enum { MAX_MESSAGE = 64 << 20 };
static const int64_t DRAIN_NS = 5000000000LL;
static const int64_t SETUP_NS = 10000000000LL;

enum kind { K_ECHO, K_UNARY, K_BATCH, K_STREAM };

static struct {
  int port;
  const char *ca, *cert, *key, *path, *frames;
  enum kind kind;
  int threads, connections, concurrency, open;
  double rate;
  long max_outstanding;
  long tick_us;
  double warmup_ms, measure_ms;
  long deadline_ms, capture_every, max_captures;
} cfg = {
    .threads = 1, .connections = 1, .concurrency = 1, .max_outstanding = 1000, .capture_every = 1};

struct frame {
  const uint8_t* p;
  size_t len;
};
static struct frame* frames;
static size_t nframes;

static SSL_CTX* ssl_ctx;
static nghttp2_nv req_nv[7];
static size_t req_nv_len, stream_nv_len;

/* --- small helpers ------------------------------------------------------------------ */

/* _exit, not exit: other threads may be inside OpenSSL, whose atexit cleanup would race them. */
static void vfail(int code, const char* fmt, va_list ap) {
  fflush(stdout);
  fputs("grpc_gen: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputs(code == 2 ? " (see the header of bench/loadgen/grpc_gen.c)\n" : "\n", stderr);
  fflush(stderr);
  _exit(code);
}

static void die(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfail(1, fmt, ap);
}

static void bad_arg(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfail(2, fmt, ap);
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint32_t be32(const uint8_t* p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

struct buf {
  uint8_t* p;
  size_t len, cap;
};

static void buf_append(struct buf* b, const void* data, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n) cap *= 2;
    uint8_t* p = realloc(b->p, cap);
    if (p == NULL) die("out of memory");
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, data, n);
  b->len += n;
}

static const char* ssl_error(void) {
  static _Thread_local char text[256];
  unsigned long e = ERR_get_error();
  if (e == 0) return errno ? strerror(errno) : "unknown error";
  ERR_error_string_n(e, text, sizeof text);
  return text;
}

/* --- protobuf: just enough of the wire format to find per-item status codes ----------- */

/* Port of the walkers in bench/loadgen/proto.ts (0 on success, -1 for a damaged message). */
struct pb_field {
  uint64_t num, value; /* value: varint fields */
  int type;
  size_t a, z; /* length-delimited fields: the payload is b[a, z) */
};

static int pb_varint(const uint8_t* b, size_t end, size_t* p, uint64_t* out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (*p >= end) return -1;
    uint8_t byte = b[(*p)++];
    v |= (uint64_t)(byte & 0x7f) << shift;
    if (byte < 0x80) {
      *out = v;
      return 0;
    }
  }
  return -1;
}

static int pb_next(const uint8_t* b, size_t end, size_t* p, struct pb_field* f) {
  uint64_t tag, len;
  if (pb_varint(b, end, p, &tag)) return -1;
  f->num = tag >> 3;
  f->type = (int)(tag & 7);
  switch (f->type) {
    case 0:
      return pb_varint(b, end, p, &f->value);
    case 1:
      if (end - *p < 8) return -1;
      *p += 8;
      return 0;
    case 2:
      if (pb_varint(b, end, p, &len) || len > end - *p) return -1;
      f->a = *p;
      f->z = *p + len;
      *p = f->z;
      return 0;
    case 5:
      if (end - *p < 4) return -1;
      *p += 4;
      return 0;
    default:
      return -1;
  }
}

/* The code (field 1) of an ItemStatus in b[a, z). */
static int pb_status_code(const uint8_t* b, size_t a, size_t z, uint64_t* code) {
  struct pb_field f;
  *code = 0;
  for (size_t p = a; p < z;) {
    if (pb_next(b, z, &p, &f)) return -1;
    if (f.num == 1 && f.type == 0) *code = f.value;
  }
  return 0;
}

/* BatchUnwrapResponse: results are field 1, each result's ItemStatus its field 1. */
static int batch_item_codes(const uint8_t* m, size_t len, uint64_t* ok, uint64_t* failed) {
  struct pb_field f, g;
  *ok = *failed = 0;
  for (size_t p = 0; p < len;) {
    if (pb_next(m, len, &p, &f)) return -1;
    if (f.num != 1 || f.type != 2) continue;
    uint64_t code = 0;
    for (size_t q = f.a; q < f.z;) {
      if (pb_next(m, f.z, &q, &g)) return -1;
      if (g.num == 1 && g.type == 2 && pb_status_code(m, g.a, g.z, &code)) return -1;
    }
    if (code == 0)
      (*ok)++;
    else
      (*failed)++;
  }
  return 0;
}

/* UnwrapStreamResponse: the ItemStatus is field 2; absent = 0. */
static int stream_item_code(const uint8_t* m, size_t len, uint64_t* code) {
  struct pb_field f;
  *code = 0;
  for (size_t p = 0; p < len;) {
    if (pb_next(m, len, &p, &f)) return -1;
    if (f.num == 2 && f.type == 2 && pb_status_code(m, f.a, f.z, code)) return -1;
  }
  return 0;
}

/* --- latency histogram ---------------------------------------------------------------- */

/* Log-linear in microseconds: exact below 256, then 128 buckets per power of two, so a
 * bucket's midpoint is within 1/256 (0.4%) of any value in it; fixed size, so threads
 * merge by adding arrays. */
enum { H_SUB_BITS = 7, H_SUB = 1 << H_SUB_BITS, H_EXACT = 2 * H_SUB, H_MAX_EXP = 40 };
enum { H_BUCKETS = H_EXACT + (H_MAX_EXP - H_SUB_BITS) * H_SUB };

static size_t hist_index(uint64_t us) {
  if (us < H_EXACT) return (size_t)us;
  if (us >= (uint64_t)1 << (H_MAX_EXP + 1)) us = ((uint64_t)1 << (H_MAX_EXP + 1)) - 1;
  int e = 63 - __builtin_clzll(us);
  return H_EXACT + (size_t)(e - H_SUB_BITS - 1) * H_SUB +
         (size_t)((us >> (e - H_SUB_BITS)) - H_SUB);
}

static uint64_t hist_value(size_t i) {
  if (i < H_EXACT) return i;
  size_t e = (i - H_EXACT) / H_SUB + H_SUB_BITS + 1, sub = (i - H_EXACT) % H_SUB;
  uint64_t width = (uint64_t)1 << (e - H_SUB_BITS);
  return (H_SUB + sub) * width + width / 2;
}

/* --- per-thread state ------------------------------------------------------------------ */

struct status_count {
  char code[16];
  uint64_t n;
};

struct capture {
  int frame;
  uint8_t* p;
  size_t len;
};

struct results {
  uint64_t calls, ok_items, failed_items, transport_errors, skipped, abandoned;
  struct status_count non_ok[MAX_STATUSES];
  int n_non_ok;
  uint64_t hist[H_BUCKETS];
  struct capture* caps;
  size_t ncaps;
};

struct conn;

/* One call (echo/unary/batch), or the one bidi stream of a connection (kind stream). */
struct call {
  struct conn* conn;
  struct call *prev, *next; /* the connection's active calls, or the free list */
  int32_t stream_id;
  int frame; /* request frame; -1 for the bidi stream */
  size_t sent;
  int64_t start;          /* open loop: the scheduled start */
  int has_status, broken; /* broken: we reset the stream, its error already counted */
  char status[16];
  struct buf body;
};

struct conn {
  struct worker* w;
  int index, fd;
  SSL* ssl;
  nghttp2_session* h2;
  struct buf out;
  size_t out_off;
  int dead, closing, no_new, got_settings, polling_out;
  struct call* active;
  int nactive;
  /* kind stream: the request body is an open-ended sequence of frames */
  struct call* bidi;
  struct buf send;
  size_t send_off;
  int deferred, ended, resume;
  int64_t in_flight;
};

enum phase { SETUP, WAIT_GO, RUN, DRAIN, DONE };

struct worker {
  int index;
  pthread_t thread;
  int ep, tfd, wakefd;
  struct conn* conns;
  struct call* free_calls;
  size_t next_frame;
  int64_t outstanding; /* calls (kind stream: open streams) not yet closed */
  uint64_t ended;      /* calls ended so far: a change means step() has work */
  enum phase phase;
  int64_t setup_end, go, from, stop, drain_end, armed;
  double interval, offset; /* open loop: ns between this thread's slots, and its phase */
  uint64_t slot;
  struct results r;
  uint8_t rbuf[65536];
};

static struct worker* workers;
static _Atomic int64_t go_at; /* CLOCK_MONOTONIC ns; 0 until the coordinator says go */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int n_ready, n_failed;
static char fail_msg[512];

static int in_window(const struct worker* w, int64_t t) { return t >= w->from && t < w->stop; }

static void count_status(struct results* r, const char* code, uint64_t n) {
  int i = 0;
  while (i < r->n_non_ok && strcmp(r->non_ok[i].code, code) != 0) i++;
  if (i == r->n_non_ok) {
    /* grpc-status is 0..16: more distinct values than slots only from a broken server,
     * whose extra ones then add to the last slot rather than vanish. */
    if (r->n_non_ok == MAX_STATUSES) {
      i = MAX_STATUSES - 1;
    } else {
      snprintf(r->non_ok[i].code, sizeof r->non_ok[i].code, "%s", code);
      r->n_non_ok++;
    }
  }
  r->non_ok[i].n += n;
}

/* Called right after r->calls counted an in-window completion: the 1st, then every N-th. */
static void maybe_capture(struct worker* w, int frame, const uint8_t* p, size_t len) {
  struct results* r = &w->r;
  if ((long)r->ncaps >= cfg.max_captures) return;
  if (r->calls % (uint64_t)cfg.capture_every != 1 % (uint64_t)cfg.capture_every) return;
  if (r->caps == NULL) r->caps = calloc((size_t)cfg.max_captures, sizeof *r->caps);
  uint8_t* copy = malloc(len ? len : 1);
  if (r->caps == NULL || copy == NULL) die("out of memory");
  memcpy(copy, p, len);
  r->caps[r->ncaps++] = (struct capture){frame, copy, len};
}

static void record_latency(struct worker* w, int64_t t, int64_t start) {
  int64_t us = (t - start + 500) / 1000;
  w->r.hist[hist_index(us < 1 ? 1 : (uint64_t)us)]++;
}

static struct call* call_alloc(struct conn* c) {
  struct worker* w = c->w;
  struct call* k = w->free_calls;
  if (k != NULL)
    w->free_calls = k->next;
  else if ((k = calloc(1, sizeof *k)) == NULL)
    die("out of memory");
  k->conn = c;
  k->stream_id = -1;
  k->sent = 0;
  k->has_status = 0;
  k->broken = 0;
  k->body.len = 0;
  return k;
}

static void call_link(struct call* k) {
  struct conn* c = k->conn;
  k->prev = NULL;
  k->next = c->active;
  if (c->active) c->active->prev = k;
  c->active = k;
  c->nactive++;
}

static void call_release(struct call* k) {
  struct conn* c = k->conn;
  if (k->prev)
    k->prev->next = k->next;
  else
    c->active = k->next;
  if (k->next) k->next->prev = k->prev;
  c->nactive--;
  k->next = c->w->free_calls;
  c->w->free_calls = k;
}

/* A call's stream closed (or its connection died): count it if it ended inside the window. */
static void call_done(struct call* k, int failed) {
  struct conn* c = k->conn;
  struct worker* w = c->w;
  int64_t t = now_ns();
  w->ended++;
  if (k == c->bidi) {
    /* The stream's messages were counted as they came; here only its end. */
    if (!k->broken && (failed || !k->has_status))
      w->r.transport_errors++;
    else if (!k->broken && strcmp(k->status, "0") != 0)
      count_status(&w->r, k->status, 1);
    w->r.abandoned += (uint64_t)c->in_flight;
    c->in_flight = 0;
    c->bidi = NULL;
    w->outstanding--;
    call_release(k);
    return;
  }
  if (in_window(w, t)) {
    struct results* r = &w->r;
    const uint8_t* b = k->body.p;
    size_t n = k->body.len;
    r->calls++;
    if (failed || !k->has_status)
      r->transport_errors++;
    else if (strcmp(k->status, "0") != 0)
      count_status(r, k->status, 1);
    else if (n < 5 || be32(b + 1) > n - 5)
      r->transport_errors++; /* not one whole gRPC message */
    else if (cfg.kind == K_BATCH) {
      uint64_t ok, bad;
      if (batch_item_codes(b + 5, be32(b + 1), &ok, &bad) != 0)
        r->transport_errors++;
      else {
        r->ok_items += ok;
        r->failed_items += bad;
        maybe_capture(w, k->frame, b + 5, be32(b + 1));
      }
    } else {
      r->ok_items++;
      maybe_capture(w, k->frame, b + 5, be32(b + 1));
    }
    record_latency(w, t, k->start);
  }
  w->outstanding--;
  call_release(k);
}

/* --- nghttp2 callbacks (user_data = the connection) ------------------------------------ */

static h2_ssize read_frame(nghttp2_session* s, int32_t id, uint8_t* buf, size_t length,
                           uint32_t* flags, nghttp2_data_source* src, void* user) {
  (void)s, (void)id, (void)user;
  struct call* k = src->ptr;
  const struct frame* f = &frames[k->frame];
  size_t n = f->len - k->sent < length ? f->len - k->sent : length;
  memcpy(buf, f->p + k->sent, n);
  k->sent += n;
  if (k->sent == f->len) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (h2_ssize)n;
}

/* The bidi stream's body: whatever frames were pushed; deferred while there are none. */
static h2_ssize read_bidi(nghttp2_session* s, int32_t id, uint8_t* buf, size_t length,
                          uint32_t* flags, nghttp2_data_source* src, void* user) {
  (void)s, (void)id, (void)user;
  struct conn* c = src->ptr;
  size_t avail = c->send.len - c->send_off;
  if (avail == 0) {
    if (c->ended) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      return 0;
    }
    c->deferred = 1;
    return NGHTTP2_ERR_DEFERRED;
  }
  size_t n = avail < length ? avail : length;
  memcpy(buf, c->send.p + c->send_off, n);
  c->send_off += n;
  if (c->send_off == c->send.len) c->send.len = c->send_off = 0;
  return (h2_ssize)n;
}

static void bidi_push(struct conn* c) {
  const struct frame* f = &frames[c->w->next_frame++ % nframes];
  buf_append(&c->send, f->p, f->len);
  c->in_flight++;
  c->resume = 1;
}

/* Ends the request body once nothing is in flight after the window. */
static void bidi_maybe_end(struct conn* c, int64_t t) {
  if (c->bidi != NULL && !c->ended && c->in_flight == 0 && t >= c->w->stop) {
    c->ended = 1;
    c->resume = 1;
  }
}

/* Splits the bidi stream's response body into messages and counts each. */
static void bidi_messages(struct conn* c, struct call* k) {
  struct worker* w = c->w;
  struct buf* b = &k->body;
  size_t p = 0;
  int64_t t = now_ns();
  while (b->len - p >= 5) {
    uint32_t len = be32(b->p + p + 1);
    if (len > MAX_MESSAGE || c->in_flight <= 0) {
      /* A message we cannot be waiting for: the stream is broken, not miscounted. */
      w->r.transport_errors++;
      k->broken = 1;
      nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, k->stream_id, NGHTTP2_CANCEL);
      b->len = 0;
      return;
    }
    if (b->len - p - 5 < len) break;
    const uint8_t* m = b->p + p + 5;
    p += 5 + (size_t)len;
    c->in_flight--;
    if (in_window(w, t)) {
      uint64_t code;
      w->r.calls++;
      if (stream_item_code(m, len, &code) != 0)
        w->r.transport_errors++;
      else {
        if (code == 0)
          w->r.ok_items++;
        else
          w->r.failed_items++;
        maybe_capture(w, -1, m, len);
      }
    }
    if (t < w->stop) bidi_push(c);
  }
  if (p > 0) {
    memmove(b->p, b->p + p, b->len - p);
    b->len -= p;
  }
  bidi_maybe_end(c, t);
}

static int on_header(nghttp2_session* s, const nghttp2_frame* f, const uint8_t* name,
                     size_t namelen, const uint8_t* value, size_t valuelen, uint8_t flags,
                     void* user) {
  (void)flags;
  struct conn* c = user;
  if (c->dead || c->closing || f->hd.type != NGHTTP2_HEADERS) return 0;
  if (namelen != 11 || memcmp(name, "grpc-status", 11) != 0) return 0;
  struct call* k = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
  if (k == NULL) return 0;
  /* Kept as a short printable key for the nonOk counts. */
  size_t n = valuelen < sizeof k->status - 1 ? valuelen : sizeof k->status - 1;
  for (size_t i = 0; i < n; i++) {
    char ch = (char)value[i];
    k->status[i] = (ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z') ||
                           (ch >= 'a' && ch <= 'z') || ch == '-' || ch == '_'
                       ? ch
                       : '?';
  }
  k->status[n] = '\0';
  k->has_status = 1;
  return 0;
}

static int on_data(nghttp2_session* s, uint8_t flags, int32_t id, const uint8_t* data, size_t len,
                   void* user) {
  (void)flags;
  struct conn* c = user;
  if (c->dead || c->closing) return 0;
  struct call* k = nghttp2_session_get_stream_user_data(s, id);
  if (k == NULL) return 0;
  if (k->broken) return 0; /* what was still on the way after our RST_STREAM */
  buf_append(&k->body, data, len);
  if (k == c->bidi) bidi_messages(c, k);
  return 0;
}

static int on_close(nghttp2_session* s, int32_t id, uint32_t error_code, void* user) {
  struct conn* c = user;
  if (c->dead || c->closing) return 0;
  struct call* k = nghttp2_session_get_stream_user_data(s, id);
  if (k != NULL) call_done(k, error_code != NGHTTP2_NO_ERROR);
  return 0;
}

static int on_frame(nghttp2_session* s, const nghttp2_frame* f, void* user) {
  (void)s;
  struct conn* c = user;
  if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK)) c->got_settings = 1;
  /* After GOAWAY new requests would fail one by one: start none on this connection. */
  if (f->hd.type == NGHTTP2_GOAWAY) c->no_new = 1;
  return 0;
}

/* --- connections ----------------------------------------------------------------------- */

static void report_failure(const char* fmt, ...) {
  pthread_mutex_lock(&mu);
  if (n_failed++ == 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fail_msg, sizeof fail_msg, fmt, ap);
    va_end(ap);
  }
  pthread_cond_signal(&cv);
  pthread_mutex_unlock(&mu);
}

/* The connection is gone: its calls fail (counted if they end in the window). */
static void conn_fail(struct conn* c, const char* why) {
  if (c->dead) return;
  struct worker* w = c->w;
  if (c->closing) {
    c->dead = 1;
    return;
  }
  if (w->phase == SETUP) {
    report_failure("thread %d connection %d: %s", w->index, c->index, why);
  } else if (w->phase != DONE) {
    fprintf(stderr, "grpc_gen: thread %d connection %d failed: %s\n", w->index, c->index, why);
  }
  while (c->active != NULL) call_done(c->active, 1);
  c->dead = 1;
  epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
}

static void conn_poll_out(struct conn* c, int on) {
  if (c->polling_out == on) return;
  struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0),
                           .data.u64 = 2 + (uint64_t)c->index};
  epoll_ctl(c->w->ep, EPOLL_CTL_MOD, c->fd, &ev);
  c->polling_out = on;
}

/* Everything nghttp2 has to send, gathered, then one SSL_write where the socket takes it. */
static void conn_flush(struct conn* c) {
  if (c->dead) return;
  /* Frames pushed (or the end decided) since the provider last said "deferred". */
  if (c->resume && c->deferred && c->bidi != NULL) {
    c->deferred = 0;
    nghttp2_session_resume_data(c->h2, c->bidi->stream_id);
  }
  c->resume = 0;
  for (;;) {
    const uint8_t* d;
    h2_ssize n = h2_mem_send(c->h2, &d);
    if (n < 0) {
      conn_fail(c, nghttp2_strerror((int)n));
      return;
    }
    if (n == 0) break;
    buf_append(&c->out, d, (size_t)n);
  }
  while (c->out_off < c->out.len) {
    size_t left = c->out.len - c->out_off;
    ERR_clear_error();
    int n = SSL_write(c->ssl, c->out.p + c->out_off, left > 1 << 30 ? 1 << 30 : (int)left);
    if (n > 0) {
      c->out_off += (size_t)n;
      continue;
    }
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
      conn_poll_out(c, 1);
      return;
    }
    conn_fail(c, ssl_error());
    return;
  }
  c->out.len = c->out_off = 0;
  conn_poll_out(c, 0);
  if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2))
    conn_fail(c, "HTTP/2 session ended");
}

static void conn_read(struct conn* c) {
  struct worker* w = c->w;
  while (!c->dead) {
    ERR_clear_error();
    int n = SSL_read(c->ssl, w->rbuf, sizeof w->rbuf);
    if (n > 0) {
      h2_ssize rv = h2_mem_recv(c->h2, w->rbuf, (size_t)n);
      if (rv < 0) {
        conn_fail(c, nghttp2_strerror((int)rv));
        return;
      }
      /* Level-triggered epoll reports what the socket still holds; only what OpenSSL
       * already read ahead must be taken now. Saves the read() that says EAGAIN. */
      if (!SSL_has_pending(c->ssl)) return;
      continue;
    }
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_READ) return;
    if (e == SSL_ERROR_WANT_WRITE) {
      conn_poll_out(c, 1);
      return;
    }
    conn_fail(c, e == SSL_ERROR_ZERO_RETURN ? "closed by the server" : ssl_error());
    return;
  }
}

/* Blocking connect and TLS handshake (bounded by socket timeouts), then non-blocking. */
static int conn_open(struct worker* w, struct conn* c, char* err, size_t errlen) {
  c->w = w;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->fd < 0) return snprintf(err, errlen, "socket: %s", strerror(errno)), -1;
  struct timeval tv = {10, 0};
  setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg.port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(c->fd, (struct sockaddr*)&sa, sizeof sa) != 0)
    return snprintf(err, errlen, "cannot connect to 127.0.0.1:%d: %s", cfg.port, strerror(errno)),
           -1;
  c->ssl = SSL_new(ssl_ctx);
  if (c->ssl == NULL) return snprintf(err, errlen, "SSL_new: %s", ssl_error()), -1;
  SSL_set_fd(c->ssl, c->fd);
  /* SNI and the verified name: the dev server certificate names localhost. */
  SSL_set_tlsext_host_name(c->ssl, "localhost");
  SSL_set1_host(c->ssl, "localhost");
  static const unsigned char alpn[] = "\x02h2";
  SSL_set_alpn_protos(c->ssl, alpn, sizeof alpn - 1);
  ERR_clear_error();
  if (SSL_connect(c->ssl) != 1) {
    long v = SSL_get_verify_result(c->ssl);
    return snprintf(err, errlen, "TLS handshake with 127.0.0.1:%d failed: %s%s%s", cfg.port,
                    ssl_error(), v != X509_V_OK ? "; certificate: " : "",
                    v != X509_V_OK ? X509_verify_cert_error_string(v) : ""),
           -1;
  }
  const unsigned char* proto = NULL;
  unsigned proto_len = 0;
  SSL_get0_alpn_selected(c->ssl, &proto, &proto_len);
  if (proto_len != 2 || memcmp(proto, "h2", 2) != 0)
    return snprintf(err, errlen, "the server did not negotiate ALPN h2"), -1;
  fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);

  nghttp2_session_callbacks* cb;
  if (nghttp2_session_callbacks_new(&cb) != 0) die("out of memory");
  nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
  int rv = nghttp2_session_client_new(&c->h2, cb, c);
  nghttp2_session_callbacks_del(cb);
  if (rv != 0) die("nghttp2_session_client_new: %s", nghttp2_strerror(rv));
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, WINDOW},
  };
  nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
  nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, WINDOW);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 2 + (uint64_t)c->index};
  if (epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) die("epoll_ctl: %s", strerror(errno));
  return 0;
}

static void conn_close(struct conn* c) {
  /* From here on callbacks count nothing: what was left is already counted as abandoned. */
  c->closing = 1;
  if (!c->dead && c->h2 != NULL) {
    /* GOAWAY and close_notify, best effort: the socket is non-blocking and nearly idle. */
    nghttp2_session_terminate_session(c->h2, NGHTTP2_NO_ERROR);
    conn_flush(c);
    SSL_shutdown(c->ssl);
  }
  c->dead = 1;
  if (c->h2) nghttp2_session_del(c->h2);
  if (c->ssl) SSL_free(c->ssl);
  if (c->fd >= 0) close(c->fd);
  free(c->out.p);
  free(c->send.p);
}

/* --- load ----------------------------------------------------------------------------- */

static int can_start(const struct conn* c) {
  return !c->dead && !c->no_new && nghttp2_session_check_request_allowed(c->h2);
}

/* One call on its own stream; `start` is when it was meant to start. */
static void start_call(struct conn* c, int64_t start) {
  struct worker* w = c->w;
  struct call* k = call_alloc(c);
  k->frame = (int)(w->next_frame++ % nframes);
  k->start = start;
  h2_data_provider prd = {.source.ptr = k, .read_callback = read_frame};
  k->stream_id = h2_submit_request(c->h2, NULL, req_nv, req_nv_len, &prd, k);
  call_link(k);
  w->outstanding++;
  if (k->stream_id < 0) {
    c->no_new = 1;
    call_done(k, 1);
  }
}

static void start_bidi(struct conn* c) {
  struct worker* w = c->w;
  if (!can_start(c)) {
    w->r.transport_errors++;
    return;
  }
  struct call* k = call_alloc(c);
  k->frame = -1;
  c->bidi = k;
  for (int i = 0; i < cfg.concurrency; i++) bidi_push(c);
  c->resume = 0;
  h2_data_provider prd = {.source.ptr = c, .read_callback = read_bidi};
  k->stream_id = h2_submit_request(c->h2, NULL, req_nv, stream_nv_len, &prd, k);
  call_link(k);
  w->outstanding++;
  if (k->stream_id < 0) call_done(k, 1);
}

static int64_t slot_time(const struct worker* w, uint64_t k) {
  return w->go + (int64_t)(w->offset + (double)k * w->interval);
}

/* Open loop: every slot that is due, round-robin over the connections. */
static void schedule(struct worker* w, int64_t t) {
  for (int64_t s; (s = slot_time(w, w->slot)) <= t && s < w->stop;) {
    struct conn* c = &w->conns[w->slot++ % (uint64_t)cfg.connections];
    if (w->outstanding >= cfg.max_outstanding) {
      if (in_window(w, s)) w->r.skipped++;
    } else if (!can_start(c)) {
      if (in_window(w, s)) w->r.transport_errors++;
    } else {
      start_call(c, s);
    }
  }
}

/* Closed loop: each connection back to `concurrency` calls in flight, while before stop. */
static void refill(struct worker* w) {
  for (int i = 0; i < cfg.connections; i++) {
    struct conn* c = &w->conns[i];
    while (c->nactive < cfg.concurrency && can_start(c)) {
      int64_t t = now_ns();
      if (t >= w->stop) return;
      start_call(c, t);
    }
  }
}

static void begin_load(struct worker* w, int64_t t) {
  w->phase = RUN;
  if (cfg.kind == K_STREAM) {
    for (int i = 0; i < cfg.connections; i++) start_bidi(&w->conns[i]);
  } else if (cfg.open) {
    schedule(w, t);
  } else {
    refill(w);
  }
}

/* Phase changes that depend on time or on calls having ended. */
static void step(struct worker* w) {
  int64_t t = now_ns();
  switch (w->phase) {
    case SETUP: {
      int all = 1;
      for (int i = 0; i < cfg.connections; i++) {
        if (w->conns[i].dead) return; /* already reported */
        all &= w->conns[i].got_settings;
      }
      if (all) {
        w->phase = WAIT_GO;
        pthread_mutex_lock(&mu);
        n_ready++;
        pthread_cond_signal(&cv);
        pthread_mutex_unlock(&mu);
      } else if (t >= w->setup_end) {
        report_failure("thread %d: no HTTP/2 SETTINGS from the server within %d s", w->index,
                       (int)(SETUP_NS / 1000000000));
        w->phase = DONE;
      }
      return;
    }
    case WAIT_GO: {
      int64_t go = atomic_load(&go_at);
      if (go == 0) return;
      w->go = go;
      w->from = go + (int64_t)(cfg.warmup_ms * 1e6);
      w->stop = w->from + (int64_t)(cfg.measure_ms * 1e6);
      w->drain_end = w->stop + DRAIN_NS;
      if (t < go) return;
      begin_load(w, t);
      return;
    }
    case RUN:
      if (cfg.open)
        schedule(w, t);
      else if (cfg.kind != K_STREAM)
        refill(w);
      if (t < w->stop) return;
      w->phase = DRAIN;
      /* fall through */
    case DRAIN:
      if (cfg.kind == K_STREAM)
        for (int i = 0; i < cfg.connections; i++) bidi_maybe_end(&w->conns[i], t);
      if (w->outstanding == 0) {
        w->phase = DONE;
      } else if (t >= w->drain_end) {
        if (cfg.kind == K_STREAM) {
          for (int i = 0; i < cfg.connections; i++)
            w->r.abandoned += (uint64_t)w->conns[i].in_flight;
        } else {
          w->r.abandoned += (uint64_t)w->outstanding;
        }
        w->phase = DONE;
      }
      return;
    case DONE:
      return;
  }
}

static int64_t next_deadline(const struct worker* w) {
  switch (w->phase) {
    case SETUP:
      return w->setup_end;
    case WAIT_GO:
      return w->go; /* 0 (disarmed) until go is known */
    case RUN:
      if (cfg.open) {
        int64_t s = slot_time(w, w->slot);
        /* With a tick, the thread wakes on tick boundaries and starts every slot due by
         * then: fewer wakeups, calls leaving in small groups, each still timed from its
         * own slot (so the wait for the tick counts as latency). */
        if (cfg.tick_us > 0) {
          int64_t tick = cfg.tick_us * 1000;
          s = w->go + ((s - w->go + tick - 1) / tick) * tick;
        }
        return s < w->stop ? s : w->stop;
      }
      return w->stop;
    case DRAIN:
      return w->drain_end;
    default:
      return 0;
  }
}

static void arm(struct worker* w, int64_t at) {
  if (at == w->armed) return;
  struct itimerspec its = {{0, 0}, {0, 0}};
  if (at > 0) {
    its.it_value.tv_sec = at / 1000000000;
    its.it_value.tv_nsec = at % 1000000000;
  }
  timerfd_settime(w->tfd, TFD_TIMER_ABSTIME, &its, NULL);
  w->armed = at;
}

static void* worker_main(void* arg) {
  struct worker* w = arg;
  w->ep = epoll_create1(EPOLL_CLOEXEC);
  w->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  w->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (w->ep < 0 || w->tfd < 0 || w->wakefd < 0) die("epoll/timerfd/eventfd: %s", strerror(errno));
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
  epoll_ctl(w->ep, EPOLL_CTL_ADD, w->tfd, &ev);
  ev.data.u64 = 1;
  epoll_ctl(w->ep, EPOLL_CTL_ADD, w->wakefd, &ev);
  w->conns = calloc((size_t)cfg.connections, sizeof *w->conns);
  if (w->conns == NULL) die("out of memory");
  for (int i = 0; i < cfg.connections; i++) {
    w->conns[i].index = i;
    w->conns[i].fd = -1;
  }
  for (int i = 0; i < cfg.connections; i++) {
    char err[400];
    if (conn_open(w, &w->conns[i], err, sizeof err) != 0) {
      report_failure("thread %d connection %d: %s", w->index, i, err);
      for (int j = i; j < cfg.connections; j++) w->conns[j].dead = 1;
      w->phase = DONE;
      break;
    }
  }
  w->setup_end = now_ns() + SETUP_NS;

  struct epoll_event evs[64];
  while (w->phase != DONE) {
    /* Start what is due, send it; again if sending ended calls (a failed connection). */
    uint64_t ended;
    do {
      ended = w->ended;
      step(w);
      for (int i = 0; i < cfg.connections; i++) conn_flush(&w->conns[i]);
    } while (ended != w->ended && w->phase != DONE);
    if (w->phase == DONE) break;
    arm(w, next_deadline(w));
    int n = epoll_wait(w->ep, evs, sizeof evs / sizeof evs[0], -1);
    if (n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n; i++) {
      uint64_t id = evs[i].data.u64, junk;
      if (id < 2) {
        if (read(id == 0 ? w->tfd : w->wakefd, &junk, sizeof junk) < 0 && errno != EAGAIN)
          die("read timerfd/eventfd: %s", strerror(errno));
        if (id == 0) w->armed = 0;
        continue;
      }
      struct conn* c = &w->conns[id - 2];
      if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) conn_read(c);
    }
  }
  for (int i = 0; i < cfg.connections; i++) {
    struct conn* c = &w->conns[i];
    conn_close(c);
    while (c->active != NULL) call_release(c->active);
  }
  while (w->free_calls != NULL) {
    struct call* k = w->free_calls;
    w->free_calls = k->next;
    free(k->body.p);
    free(k);
  }
  close(w->ep);
  close(w->tfd);
  close(w->wakefd);
  return NULL;
}

/* --- arguments ------------------------------------------------------------------------ */

static long parse_long(const char* name, const char* v, long min, long max) {
  char* end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0' || x < min || x > max)
    bad_arg("--%s must be an integer from %ld to %ld (got \"%s\")", name, min, max, v);
  return x;
}

static double parse_double(const char* name, const char* v, double min, double max) {
  char* end;
  errno = 0;
  double x = strtod(v, &end);
  if (errno != 0 || end == v || *end != '\0' || !(x >= min && x <= max))
    bad_arg("--%s must be a number from %g to %g (got \"%s\")", name, min, max, v);
  return x;
}

static const char* readable(const char* name, const char* path) {
  if (access(path, R_OK) != 0) bad_arg("--%s %s: %s", name, path, strerror(errno));
  return path;
}

enum opt {
  OPT_PORT,
  OPT_CA,
  OPT_CERT,
  OPT_KEY,
  OPT_PATH,
  OPT_KIND,
  OPT_FRAMES,
  OPT_THREADS,
  OPT_CONNECTIONS,
  OPT_CONCURRENCY,
  OPT_MODE,
  OPT_RATE,
  OPT_MAX_OUTSTANDING,
  OPT_TICK_US,
  OPT_WARMUP_MS,
  OPT_MEASURE_MS,
  OPT_DEADLINE_MS,
  OPT_CAPTURE_EVERY,
  OPT_MAX_CAPTURES,
  N_OPTS
};

static const char* const opt_names[N_OPTS] = {
    [OPT_PORT] = "port",
    [OPT_CA] = "ca",
    [OPT_CERT] = "cert",
    [OPT_KEY] = "key",
    [OPT_PATH] = "path",
    [OPT_KIND] = "kind",
    [OPT_FRAMES] = "frames",
    [OPT_THREADS] = "threads",
    [OPT_CONNECTIONS] = "connections",
    [OPT_CONCURRENCY] = "concurrency",
    [OPT_MODE] = "mode",
    [OPT_RATE] = "rate",
    [OPT_MAX_OUTSTANDING] = "max-outstanding",
    [OPT_TICK_US] = "tick-us",
    [OPT_WARMUP_MS] = "warmup-ms",
    [OPT_MEASURE_MS] = "measure-ms",
    [OPT_DEADLINE_MS] = "deadline-ms",
    [OPT_CAPTURE_EVERY] = "capture-every",
    [OPT_MAX_CAPTURES] = "max-captures",
};

static void parse_args(int argc, char** argv) {
  int seen[N_OPTS] = {0};
  const char* mode = "closed";
  for (int i = 1; i < argc; i++) {
    const char* a = argv[i];
    if (strcmp(a, "--help") == 0) {
      puts(
          "usage: grpc_gen --port N --ca FILE --cert FILE --key FILE --path PATH --kind KIND "
          "--frames FILE --measure-ms N [options]; see bench/loadgen/grpc_gen.c");
      exit(0);
    }
    if (strncmp(a, "--", 2) != 0) bad_arg("unexpected argument \"%s\"", a);
    const char* name = a + 2;
    const char* eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    enum opt o = 0;
    while (o < N_OPTS && !(strlen(opt_names[o]) == len && strncmp(opt_names[o], name, len) == 0))
      o++;
    if (o == N_OPTS) bad_arg("unknown option \"%s\"", a);
    const char* v = eq ? eq + 1 : NULL;
    if (v == NULL) {
      if (i + 1 >= argc) bad_arg("--%s needs a value", opt_names[o]);
      v = argv[++i];
    }
    if (seen[o]++) bad_arg("--%s given twice", opt_names[o]);
    const char* n = opt_names[o];
    switch (o) {
      case OPT_PORT:
        cfg.port = (int)parse_long(n, v, 1, 65535);
        break;
      case OPT_CA:
        cfg.ca = readable(n, v);
        break;
      case OPT_CERT:
        cfg.cert = readable(n, v);
        break;
      case OPT_KEY:
        cfg.key = readable(n, v);
        break;
      case OPT_PATH:
        cfg.path = v;
        break;
      case OPT_KIND:
        if (strcmp(v, "echo") == 0)
          cfg.kind = K_ECHO;
        else if (strcmp(v, "unary") == 0)
          cfg.kind = K_UNARY;
        else if (strcmp(v, "batch") == 0)
          cfg.kind = K_BATCH;
        else if (strcmp(v, "stream") == 0)
          cfg.kind = K_STREAM;
        else
          bad_arg("--kind must be echo, unary, batch or stream (got \"%s\")", v);
        break;
      case OPT_FRAMES:
        cfg.frames = readable(n, v);
        break;
      case OPT_THREADS:
        cfg.threads = (int)parse_long(n, v, 1, MAX_THREADS);
        break;
      case OPT_CONNECTIONS:
        cfg.connections = (int)parse_long(n, v, 1, MAX_CONNECTIONS);
        break;
      case OPT_CONCURRENCY:
        cfg.concurrency = (int)parse_long(n, v, 1, 65536);
        break;
      case OPT_MODE:
        mode = v;
        break;
      case OPT_RATE:
        cfg.rate = parse_double(n, v, 0.001, 1e7);
        break;
      case OPT_MAX_OUTSTANDING:
        cfg.max_outstanding = parse_long(n, v, 1, 10000000);
        break;
      case OPT_TICK_US:
        cfg.tick_us = parse_long(n, v, 0, 1000000);
        break;
      case OPT_WARMUP_MS:
        cfg.warmup_ms = parse_double(n, v, 0, 3600e3);
        break;
      case OPT_MEASURE_MS:
        cfg.measure_ms = parse_double(n, v, 1, 3600e3);
        break;
      /* grpc-timeout takes at most 8 digits */
      case OPT_DEADLINE_MS:
        cfg.deadline_ms = parse_long(n, v, 0, 99999999);
        break;
      case OPT_CAPTURE_EVERY:
        cfg.capture_every = parse_long(n, v, 1, 1000000000);
        break;
      case OPT_MAX_CAPTURES:
        cfg.max_captures = parse_long(n, v, 0, 100000);
        break;
      case N_OPTS:
        break;
    }
  }
  static const enum opt required[] = {OPT_PORT, OPT_CA,   OPT_CERT,   OPT_KEY,
                                      OPT_PATH, OPT_KIND, OPT_FRAMES, OPT_MEASURE_MS};
  for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
    if (!seen[required[i]]) bad_arg("--%s is required", opt_names[required[i]]);
  if (cfg.path[0] != '/') bad_arg("--path must start with / (got \"%s\")", cfg.path);
  if (strlen(cfg.path) > 200) bad_arg("--path is longer than 200 characters");
  for (const char* p = cfg.path; *p; p++)
    if (*p <= ' ' || *p > '~') bad_arg("--path must be printable ASCII without spaces");
  if (strcmp(mode, "open") == 0)
    cfg.open = 1;
  else if (strcmp(mode, "closed") != 0)
    bad_arg("--mode must be closed or open (got \"%s\")", mode);
  if (cfg.open && cfg.kind == K_STREAM) bad_arg("--kind stream runs closed loop only");
  if (cfg.open && !seen[OPT_RATE]) bad_arg("--mode open needs --rate");
  if (!cfg.open && (seen[OPT_RATE] || seen[OPT_MAX_OUTSTANDING] || seen[OPT_TICK_US]))
    bad_arg("--rate, --max-outstanding and --tick-us apply to --mode open only");
}

/* The frames file: u32 big-endian length + one whole gRPC frame, repeated. */
static void load_frames(void) {
  FILE* f = fopen(cfg.frames, "rb");
  if (f == NULL) bad_arg("--frames %s: %s", cfg.frames, strerror(errno));
  struct buf all = {0};
  uint8_t chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) buf_append(&all, chunk, n);
  if (ferror(f)) bad_arg("--frames %s: read error", cfg.frames);
  fclose(f);
  size_t cap = 16;
  frames = malloc(cap * sizeof *frames);
  if (frames == NULL) die("out of memory");
  for (size_t p = 0; p < all.len;) {
    if (all.len - p < 4) bad_arg("--frames %s: truncated record header", cfg.frames);
    size_t len = be32(all.p + p);
    p += 4;
    if (len > all.len - p) bad_arg("--frames %s: record %zu is truncated", cfg.frames, nframes);
    const uint8_t* r = all.p + p;
    if (len < 5 || r[0] != 0 || be32(r + 1) != len - 5)
      bad_arg("--frames %s: record %zu is not one uncompressed gRPC message frame", cfg.frames,
              nframes);
    if (nframes == cap && (frames = realloc(frames, (cap *= 2) * sizeof *frames)) == NULL)
      die("out of memory");
    frames[nframes++] = (struct frame){r, len};
    p += len;
  }
  if (nframes == 0) bad_arg("--frames %s: no frames", cfg.frames);
}

static void setup_tls(void) {
  ssl_ctx = SSL_CTX_new(TLS_client_method());
  if (ssl_ctx == NULL) die("SSL_CTX_new: %s", ssl_error());
  SSL_CTX_set_min_proto_version(ssl_ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_PEER, NULL);
  if (SSL_CTX_load_verify_locations(ssl_ctx, cfg.ca, NULL) != 1)
    bad_arg("--ca %s: cannot load CA certificates: %s", cfg.ca, ssl_error());
  if (SSL_CTX_use_certificate_chain_file(ssl_ctx, cfg.cert) != 1)
    bad_arg("--cert %s: cannot load the certificate: %s", cfg.cert, ssl_error());
  if (SSL_CTX_use_PrivateKey_file(ssl_ctx, cfg.key, SSL_FILETYPE_PEM) != 1)
    bad_arg("--key %s: cannot load the private key: %s", cfg.key, ssl_error());
  if (SSL_CTX_check_private_key(ssl_ctx) != 1)
    bad_arg("--key %s does not match --cert %s", cfg.key, cfg.cert);
  /* Partial writes and a buffer that may move: the output buffer grows between retries. */
  SSL_CTX_set_mode(ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  /* Read what the socket holds in one read() instead of one per TLS record. */
  SSL_CTX_set_read_ahead(ssl_ctx, 1);
  SSL_CTX_set_default_read_buffer_len(ssl_ctx, 65536);
}

static nghttp2_nv nv(const char* name, const char* value) {
  return (nghttp2_nv){(uint8_t*)name, (uint8_t*)value, strlen(name), strlen(value),
                      NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
}

static void setup_headers(void) {
  static char authority[32], timeout[16];
  snprintf(authority, sizeof authority, "localhost:%d", cfg.port);
  snprintf(timeout, sizeof timeout, "%ldm", cfg.deadline_ms);
  req_nv[0] = nv(":method", "POST");
  req_nv[1] = nv(":scheme", "https");
  req_nv[2] = nv(":authority", authority);
  req_nv[3] = nv(":path", cfg.path);
  req_nv[4] = nv("content-type", "application/grpc");
  req_nv[5] = nv("te", "trailers");
  /* Streams run for the whole case: never a deadline. */
  stream_nv_len = 6;
  req_nv_len = 6;
  if (cfg.deadline_ms > 0 && cfg.kind != K_STREAM)
    req_nv[req_nv_len++] = nv("grpc-timeout", timeout);
}

/* --- main ----------------------------------------------------------------------------- */

static void print_results(void) {
  struct results sum;
  memset(&sum, 0, sizeof sum);
  for (int i = 0; i < cfg.threads; i++) {
    struct results* r = &workers[i].r;
    sum.calls += r->calls;
    sum.ok_items += r->ok_items;
    sum.failed_items += r->failed_items;
    sum.transport_errors += r->transport_errors;
    sum.skipped += r->skipped;
    sum.abandoned += r->abandoned;
    for (int j = 0; j < r->n_non_ok; j++) count_status(&sum, r->non_ok[j].code, r->non_ok[j].n);
    for (size_t j = 0; j < H_BUCKETS; j++) sum.hist[j] += r->hist[j];
  }
  printf("{\"calls\":%" PRIu64 ",\"okItems\":%" PRIu64 ",\"failedItems\":%" PRIu64 ",\"nonOk\":{",
         sum.calls, sum.ok_items, sum.failed_items);
  for (int j = 0; j < sum.n_non_ok; j++)
    printf("%s\"%s\":%" PRIu64, j ? "," : "", sum.non_ok[j].code, sum.non_ok[j].n);
  printf("},\"transportErrors\":%" PRIu64 ",\"skipped\":%" PRIu64 ",\"abandoned\":%" PRIu64
         ",\"histogram\":[",
         sum.transport_errors, sum.skipped, sum.abandoned);
  int first = 1;
  for (size_t j = 0; j < H_BUCKETS; j++) {
    if (sum.hist[j] == 0) continue;
    printf("%s[%" PRIu64 ",%" PRIu64 "]", first ? "" : ",", hist_value(j), sum.hist[j]);
    first = 0;
  }
  printf("],\"captures\":[");
  first = 1;
  for (int i = 0; i < cfg.threads; i++) {
    struct results* r = &workers[i].r;
    for (size_t j = 0; j < r->ncaps; j++) {
      printf("%s{\"frame\":%d,\"hex\":\"", first ? "" : ",", r->caps[j].frame);
      for (size_t b = 0; b < r->caps[j].len; b++) printf("%02x", r->caps[j].p[b]);
      printf("\"}");
      first = 0;
    }
  }
  printf("]}\n");
  fflush(stdout);
}

int main(int argc, char** argv) {
  parse_args(argc, argv);
  load_frames();
  setup_tls();
  setup_headers();
  /* A peer that closes first must be an error return from SSL_write, not a signal. */
  signal(SIGPIPE, SIG_IGN);

  workers = calloc((size_t)cfg.threads, sizeof *workers);
  if (workers == NULL) die("out of memory");
  for (int i = 0; i < cfg.threads; i++) {
    struct worker* w = &workers[i];
    w->index = i;
    /* Threads start at different frames, so they do not send the same ones in step. */
    w->next_frame = (size_t)i * nframes / (size_t)cfg.threads;
    if (cfg.open) {
      w->interval = 1e9 * cfg.threads / cfg.rate;
      /* Each thread's schedule is shifted by its share, so together they are evenly spaced. */
      w->offset = w->interval * i / cfg.threads;
    }
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) die("pthread_create failed");
  }
  pthread_mutex_lock(&mu);
  while (n_failed == 0 && n_ready < cfg.threads) pthread_cond_wait(&cv, &mu);
  if (n_failed > 0) die("%s", fail_msg);
  pthread_mutex_unlock(&mu);

  printf("ready\n");
  fflush(stdout);
  char line[128];
  if (fgets(line, sizeof line, stdin) == NULL) die("stdin closed before \"go <epoch-ms>\"");
  char* end = line;
  double go_ms = strncmp(line, "go ", 3) == 0 ? strtod(line + 3, &end) : 0;
  if (go_ms <= 0 || (*end != '\n' && *end != '\0'))
    bad_arg("expected \"go <epoch-ms>\" on stdin, got \"%.40s\"", line);
  /* The coordinator's clock is epoch time; ours is monotonic: shift by their difference now. */
  struct timespec rt;
  clock_gettime(CLOCK_REALTIME, &rt);
  int64_t mono = now_ns();
  int64_t real = (int64_t)rt.tv_sec * 1000000000 + rt.tv_nsec;
  int64_t go = mono + ((int64_t)(go_ms * 1e6) - real);
  atomic_store(&go_at, go > 0 ? go : 1);
  for (int i = 0; i < cfg.threads; i++) {
    uint64_t one = 1;
    if (write(workers[i].wakefd, &one, sizeof one) < 0) die("eventfd write: %s", strerror(errno));
  }
  for (int i = 0; i < cfg.threads; i++) pthread_join(workers[i].thread, NULL);
  print_results();
  fflush(stdout);
  while (fgets(line, sizeof line, stdin) != NULL) {
  }
  return 0;
}
