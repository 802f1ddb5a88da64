// A persistent thread pool: workers wait on a condition variable (after a short spin) and
// claim tasks from an atomic counter. One job runs at a time; callers queue on a mutex.
#include "pg_kernels.h"
#include "internal.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#define PG_MAX_THREADS 256

typedef struct {
    pthread_mutex_t job_lock;      // serialises callers
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t done;
    int nthreads;                  // including the caller
    int started;                   // workers created
    long generation;
    pg_task_fn fn;
    void *ctx;
    long ntasks;
    atomic_long next;
    atomic_int active;             // workers still inside the current job
} pool_t;

static pool_t g_pool = {
    .job_lock = PTHREAD_MUTEX_INITIALIZER,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
};
static _Thread_local int t_in_task = 0;
static _Thread_local int t_thread = 0;   // pool index of the thread running a task
static _Thread_local int t_serial = 0;   // pg_set_thread_serial: kernels run here, on thread-local scratch
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void init_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    const char *env = getenv("PALIGEMMA_THREADS");
    if (env && atoi(env) > 0) n = atoi(env);
    if (n < 1) n = 1;
    if (n > PG_MAX_THREADS) n = PG_MAX_THREADS;
    g_pool.nthreads = (int)n;
}

int pg_threads(void) {
    pthread_once(&g_once, init_threads);
    return g_pool.nthreads;
}

int pg_threads_here(void) { return t_serial ? 1 : pg_threads(); }

int pg_set_thread_serial(int on) {
    int old = t_serial;
    t_serial = on != 0;
    return old;
}

void pg_set_threads(int n) {
    pthread_once(&g_once, init_threads);
    if (n < 1) n = 1;
    if (n > PG_MAX_THREADS) n = PG_MAX_THREADS;
    pthread_mutex_lock(&g_pool.job_lock);
    g_pool.nthreads = n;
    pthread_mutex_unlock(&g_pool.job_lock);
}

static void run_tasks(int thread) {
    t_in_task = 1;
    t_thread = thread;
    for (;;) {
        long i = atomic_fetch_add(&g_pool.next, 1);
        if (i >= g_pool.ntasks) break;
        g_pool.fn(g_pool.ctx, i, thread);
    }
    t_in_task = 0;
}

static void *worker_main(void *arg) {
    int thread = (int)(long)arg;
    long seen = 0;
    for (;;) {
        pthread_mutex_lock(&g_pool.lock);
        while (g_pool.generation == seen) pthread_cond_wait(&g_pool.wake, &g_pool.lock);
        seen = g_pool.generation;
        int participate = thread < g_pool.nthreads;
        pthread_mutex_unlock(&g_pool.lock);
        if (participate) run_tasks(thread);
        if (atomic_fetch_sub(&g_pool.active, 1) == 1) {
            pthread_mutex_lock(&g_pool.lock);
            pthread_cond_signal(&g_pool.done);
            pthread_mutex_unlock(&g_pool.lock);
        }
    }
    return NULL;
}

void pg_parallel_for(long ntasks, pg_task_fn fn, void *ctx) {
    if (ntasks <= 0) return;
    pg_threads();
    if (t_in_task) {  // nested: run here, on this thread's own scratch
        for (long i = 0; i < ntasks; i++) fn(ctx, i, t_thread);
        return;
    }
    if (t_serial) {  // this thread runs its kernels alone, on its own scratch (pg_scratch)
        t_in_task = 1;
        t_thread = 0;
        for (long i = 0; i < ntasks; i++) fn(ctx, i, 0);
        t_in_task = 0;
        return;
    }
    pthread_mutex_lock(&g_pool.job_lock);
    int nthreads = g_pool.nthreads;
    if (nthreads == 1 || ntasks == 1) {
        t_in_task = 1;
        t_thread = 0;
        for (long i = 0; i < ntasks; i++) fn(ctx, i, 0);
        t_in_task = 0;
        pthread_mutex_unlock(&g_pool.job_lock);
        return;
    }
    // Start any workers not yet running (thread indices 1..nthreads-1).
    while (g_pool.started < nthreads - 1) {
        pthread_t tid;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&tid, &attr, worker_main, (void *)(long)(g_pool.started + 1)) != 0) {
            pthread_attr_destroy(&attr);
            break;
        }
        pthread_attr_destroy(&attr);
        g_pool.started++;
    }
    int workers = g_pool.started;
    pthread_mutex_lock(&g_pool.lock);
    g_pool.fn = fn;
    g_pool.ctx = ctx;
    g_pool.ntasks = ntasks;
    atomic_store(&g_pool.next, 0);
    atomic_store(&g_pool.active, workers);
    g_pool.generation++;
    pthread_cond_broadcast(&g_pool.wake);
    pthread_mutex_unlock(&g_pool.lock);

    run_tasks(0);

    pthread_mutex_lock(&g_pool.lock);
    while (atomic_load(&g_pool.active) > 0) pthread_cond_wait(&g_pool.done, &g_pool.lock);
    pthread_mutex_unlock(&g_pool.lock);
    pthread_mutex_unlock(&g_pool.job_lock);
}

// ---- per-thread scratch ----------------------------------------------------------------
#define PG_SCRATCH_SLOTS 4
typedef struct { float *ptr; size_t cap; } scratch_t;
static scratch_t g_scratch[PG_MAX_THREADS][PG_SCRATCH_SLOTS];
// A thread under pg_set_thread_serial may run while the pool runs another caller's job, so it
// cannot borrow a pool index: it has scratch of its own (kept for the thread's life).
static _Thread_local scratch_t t_scratch[PG_SCRATCH_SLOTS];

float *pg_scratch(int thread, int slot, size_t floats) {
    scratch_t *s = t_serial ? &t_scratch[slot] : &g_scratch[thread][slot];
    if (s->cap < floats) {
        free(s->ptr);
        size_t cap = floats < 1024 ? 1024 : floats;
        void *p = NULL;
        if (posix_memalign(&p, 64, cap * sizeof(float)) != 0) { s->ptr = NULL; s->cap = 0; return NULL; }
        s->ptr = p;
        s->cap = cap;
    }
    return s->ptr;
}
