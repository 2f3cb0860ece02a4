/*
 * The ceiling for bench/native.ts: the same AES-256-GCM decrypts that hyokd's addon runs,
 * called straight on the PKCS#11 module from C, with nothing in between (no queue, no
 * Node-API, no JS). One session per thread; each thread loops C_DecryptInit + C_Decrypt
 * over the sample set for a fixed time and checks every plaintext.
 *
 * Everything comes from the environment, the PIN included (never argv):
 *   HYOKD_BENCH_MODULE    path of the PKCS#11 module
 *   HYOKD_BENCH_TOKEN     token label
 *   HYOKD_BENCH_PIN       user PIN (zeroed and unset once used)
 *   HYOKD_BENCH_KEK_ID    CKA_ID of the token AES key, hex
 *   HYOKD_BENCH_SAMPLES   file of fixed-size records: iv(12) aad(16) ciphertext+tag(48)
 * plaintext(32) HYOKD_BENCH_THREADS   threads (= sessions) HYOKD_BENCH_WARMUP    warm-up seconds
 * (not counted) HYOKD_BENCH_SECONDS   measured seconds SOFTHSM2_CONF must point at the token
 * directory (read by the module at C_Initialize).
 *
 * Prints one JSON line on stdout: threads, ops, seconds, ops_per_sec, errors, mismatches,
 * cpu_seconds (user+system of the whole process during the measured window),
 * system_busy_seconds (of the whole machine, same window), per_thread.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <p11-kit/pkcs11.h>

enum { IV_LEN = 12, AAD_LEN = 16, CT_LEN = 48, PT_LEN = 32 };
enum { RECORD_LEN = IV_LEN + AAD_LEN + CT_LEN + PT_LEN };
enum { MAX_THREADS = 64 };

struct sample {
  unsigned char iv[IV_LEN];
  unsigned char aad[AAD_LEN];
  unsigned char ct[CT_LEN];
  unsigned char pt[PT_LEN];
};

static CK_FUNCTION_LIST* fl;
static CK_SLOT_ID slot;
static CK_OBJECT_HANDLE kek;
static struct sample* samples;
static size_t nsamples;
static double t_warm_end, t_end; /* CLOCK_MONOTONIC seconds */
static pthread_barrier_t start_barrier;

struct thread_result {
  pthread_t thread;
  size_t index;
  uint64_t ops, errors, mismatches;
  CK_RV first_error;
};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Busy CPU seconds of the whole machine (all cores) from /proc/stat, or -1. Compared with
 * cpu_seconds it tells how much of the shared machine other processes took. */
static double system_busy_seconds(void) {
  FILE* f = fopen("/proc/stat", "r");
  if (f == NULL) return -1;
  unsigned long long v[8] = {0};
  int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                 &v[4], &v[5], &v[6], &v[7]);
  fclose(f);
  if (n != 8) return -1;
  /* user nice system (idle iowait) irq softirq steal; USER_HZ is 100 on Linux. */
  return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / 100.0;
}

static void sleep_until(double t) {
  for (;;) {
    double d = t - now();
    if (d <= 0) return;
    struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
    nanosleep(&ts, NULL);
  }
}

static void die(const char* what, CK_RV rv) {
  /* The error goes to stderr as JSON too, so the driver can show it. */
  fprintf(stderr, "{\"error\":\"%s\",\"rv\":%lu}\n", what, (unsigned long)rv);
  exit(2);
}

static const char* need_env(const char* name) {
  const char* v = getenv(name);
  if (v == NULL || *v == '\0') {
    fprintf(stderr, "{\"error\":\"missing environment variable %s\"}\n", name);
    exit(2);
  }
  return v;
}

static double env_seconds(const char* name) {
  const char* v = need_env(name);
  char* end;
  errno = 0;
  double d = strtod(v, &end);
  if (errno != 0 || *end != '\0' || d < 0 || d > 3600) die("bad number of seconds", 0);
  return d;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static size_t parse_hex(const char* hex, unsigned char* out, size_t cap) {
  size_t n = strlen(hex);
  if (n % 2 != 0 || n / 2 > cap) die("bad HYOKD_BENCH_KEK_ID", 0);
  for (size_t i = 0; i < n / 2; i++) {
    int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) die("bad HYOKD_BENCH_KEK_ID", 0);
    out[i] = (unsigned char)(hi * 16 + lo);
  }
  return n / 2;
}

static void load_samples(const char* path) {
  FILE* f = fopen(path, "rb");
  if (f == NULL) die("cannot open the sample file", 0);
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  if (size <= 0 || size % RECORD_LEN != 0)
    die("sample file size is not a whole number of records", 0);
  nsamples = (size_t)size / RECORD_LEN;
  samples = calloc(nsamples, sizeof *samples);
  if (samples == NULL) die("out of memory", 0);
  for (size_t i = 0; i < nsamples; i++) {
    struct sample* s = &samples[i];
    if (fread(s->iv, 1, IV_LEN, f) != IV_LEN || fread(s->aad, 1, AAD_LEN, f) != AAD_LEN ||
        fread(s->ct, 1, CT_LEN, f) != CT_LEN || fread(s->pt, 1, PT_LEN, f) != PT_LEN)
      die("short read on the sample file", 0);
  }
  fclose(f);
}

/* Token labels are 32 bytes padded with spaces. */
static int label_matches(const CK_UTF8CHAR* field, const char* label) {
  size_t n = strlen(label);
  if (n > 32) return 0;
  if (memcmp(field, label, n) != 0) return 0;
  for (size_t i = n; i < 32; i++)
    if (field[i] != ' ') return 0;
  return 1;
}

static void find_slot(const char* label) {
  CK_ULONG count = 0;
  CK_RV rv = fl->C_GetSlotList(CK_TRUE, NULL, &count);
  if (rv != CKR_OK) die("C_GetSlotList", rv);
  CK_SLOT_ID* slots = calloc(count ? count : 1, sizeof *slots);
  rv = fl->C_GetSlotList(CK_TRUE, slots, &count);
  if (rv != CKR_OK) die("C_GetSlotList", rv);
  for (CK_ULONG i = 0; i < count; i++) {
    CK_TOKEN_INFO ti;
    if (fl->C_GetTokenInfo(slots[i], &ti) == CKR_OK && label_matches(ti.label, label)) {
      slot = slots[i];
      free(slots);
      return;
    }
  }
  die("no token with that label", 0);
}

static void find_kek(CK_SESSION_HANDLE s, const unsigned char* id, size_t id_len) {
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_BBOOL yes = CK_TRUE;
  CK_ATTRIBUTE t[] = {
      {CKA_CLASS, &cls, sizeof cls},
      {CKA_ID, (void*)id, id_len},
      {CKA_TOKEN, &yes, sizeof yes},
  };
  CK_OBJECT_HANDLE found[2];
  CK_ULONG n = 0;
  CK_RV rv = fl->C_FindObjectsInit(s, t, 3);
  if (rv != CKR_OK) die("C_FindObjectsInit", rv);
  rv = fl->C_FindObjects(s, found, 2, &n);
  fl->C_FindObjectsFinal(s);
  if (rv != CKR_OK) die("C_FindObjects", rv);
  if (n != 1) die("expected exactly one KEK with that CKA_ID", (CK_RV)n);
  kek = found[0];
}

static void* worker(void* arg) {
  struct thread_result* r = arg;
  CK_SESSION_HANDLE s;
  CK_RV rv = fl->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
  if (rv != CKR_OK) die("C_OpenSession (worker)", rv);
  unsigned char out[CT_LEN];
  size_t i = r->index * 7; /* threads start at different samples */
  pthread_barrier_wait(&start_barrier);
  for (;;) {
    const struct sample* sm = &samples[i++ % nsamples];
    CK_GCM_PARAMS p;
    memset(&p, 0, sizeof p);
    p.pIv = (CK_BYTE_PTR)sm->iv;
    p.ulIvLen = IV_LEN;
    p.ulIvBits = IV_LEN * 8;
    p.pAAD = (CK_BYTE_PTR)sm->aad;
    p.ulAADLen = AAD_LEN;
    p.ulTagBits = 128;
    CK_MECHANISM m = {CKM_AES_GCM, &p, sizeof p};
    CK_ULONG len = sizeof out;
    rv = fl->C_DecryptInit(s, &m, kek);
    if (rv == CKR_OK) rv = fl->C_Decrypt(s, (CK_BYTE_PTR)sm->ct, CT_LEN, out, &len);
    double t = now();
    if (t >= t_end) break;
    if (t < t_warm_end) continue;
    if (rv != CKR_OK) {
      if (r->errors++ == 0) r->first_error = rv;
    } else if (len != PT_LEN || memcmp(out, sm->pt, PT_LEN) != 0) {
      r->mismatches++;
    } else {
      r->ops++;
    }
  }
  memset(out, 0, sizeof out);
  fl->C_CloseSession(s);
  return NULL;
}

int main(void) {
  const char* module = need_env("HYOKD_BENCH_MODULE");
  const char* label = need_env("HYOKD_BENCH_TOKEN");
  const char* kek_hex = need_env("HYOKD_BENCH_KEK_ID");
  const char* samples_path = need_env("HYOKD_BENCH_SAMPLES");
  long threads = strtol(need_env("HYOKD_BENCH_THREADS"), NULL, 10);
  double warmup = env_seconds("HYOKD_BENCH_WARMUP");
  double seconds = env_seconds("HYOKD_BENCH_SECONDS");
  if (threads < 1 || threads > MAX_THREADS) die("bad HYOKD_BENCH_THREADS", 0);
  if (seconds <= 0) die("HYOKD_BENCH_SECONDS must be positive", 0);
  unsigned char kek_id[64];
  size_t kek_id_len = parse_hex(kek_hex, kek_id, sizeof kek_id);
  load_samples(samples_path);

  void* lib = dlopen(module, RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) die("dlopen failed", 0);
  CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList");
  if (get == NULL) die("no C_GetFunctionList in the module", 0);
  CK_RV rv = get(&fl);
  if (rv != CKR_OK) die("C_GetFunctionList", rv);
  /* Without CKF_OS_LOCKING_OK SoftHSM2 runs without locks and crashes under threads. */
  CK_C_INITIALIZE_ARGS args;
  memset(&args, 0, sizeof args);
  args.flags = CKF_OS_LOCKING_OK;
  rv = fl->C_Initialize(&args);
  if (rv != CKR_OK) die("C_Initialize", rv);
  find_slot(label);

  /* The keeper session holds the login for the whole run. */
  CK_SESSION_HANDLE keeper;
  rv = fl->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &keeper);
  if (rv != CKR_OK) die("C_OpenSession", rv);
  char* pin = getenv("HYOKD_BENCH_PIN");
  if (pin == NULL || *pin == '\0') die("missing environment variable HYOKD_BENCH_PIN", 0);
  size_t pin_len = strlen(pin);
  rv = fl->C_Login(keeper, CKU_USER, (CK_UTF8CHAR_PTR)pin, pin_len);
  memset(pin, 0, pin_len);
  unsetenv("HYOKD_BENCH_PIN");
  if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) die("C_Login", rv);
  find_kek(keeper, kek_id, kek_id_len);

  struct thread_result res[MAX_THREADS];
  memset(res, 0, sizeof res);
  pthread_barrier_init(&start_barrier, NULL, (unsigned)threads + 1);
  /* Far in the future until every session is open, then set before the barrier. */
  t_warm_end = t_end = 1e18;
  for (long i = 0; i < threads; i++) {
    res[i].index = (size_t)i;
    if (pthread_create(&res[i].thread, NULL, worker, &res[i]) != 0) die("pthread_create", 0);
  }
  double t0 = now();
  t_warm_end = t0 + warmup;
  t_end = t_warm_end + seconds;
  pthread_barrier_wait(&start_barrier);
  sleep_until(t_warm_end);
  double cpu0 = cpu_seconds(), sys0 = system_busy_seconds();
  sleep_until(t_end);
  double cpu1 = cpu_seconds(), sys1 = system_busy_seconds();
  for (long i = 0; i < threads; i++) pthread_join(res[i].thread, NULL);

  uint64_t ops = 0, errors = 0, mismatches = 0;
  CK_RV first_error = CKR_OK;
  for (long i = 0; i < threads; i++) {
    ops += res[i].ops;
    errors += res[i].errors;
    mismatches += res[i].mismatches;
    if (first_error == CKR_OK) first_error = res[i].first_error;
  }
  printf(
      "{\"threads\":%ld,\"ops\":%llu,\"seconds\":%.3f,\"ops_per_sec\":%.1f,\"errors\":%llu,"
      "\"mismatches\":%llu,\"first_error\":%lu,\"cpu_seconds\":%.3f,"
      "\"system_busy_seconds\":%.2f,\"per_thread\":[",
      threads, (unsigned long long)ops, seconds, (double)ops / seconds, (unsigned long long)errors,
      (unsigned long long)mismatches, (unsigned long)first_error, cpu1 - cpu0,
      sys0 < 0 || sys1 < 0 ? -1.0 : sys1 - sys0);
  for (long i = 0; i < threads; i++) printf("%s%llu", i ? "," : "", (unsigned long long)res[i].ops);
  printf("]}\n");
  fflush(stdout);

  fl->C_Logout(keeper);
  fl->C_CloseSession(keeper);
  fl->C_Finalize(NULL);
  free(samples);
  return 0;
}
