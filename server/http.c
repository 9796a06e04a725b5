/* http.c — drq-server --http HOST:PORT: a read-only live view (docs/dashboard.md).
 *
 *   /                 the HTML dashboard (inline CSS and JS, no external asset), refreshing itself
 *   /api/status       the JSON of `drq status --json` (also /api/status.json)
 *   /api/dashboard    status + workers + per-sweep report + loop figures, what the page polls
 *   /metrics          Prometheus text exposition (version 0.0.4)
 *
 * Threads.  libmicrohttpd serves every request on its own internal thread;
 * the coordinator's loop never waits for HTTP.  Each heartbeat tick the loop
 * publishes a snapshot (status with rates and ETA, workers, loop figures) as
 * JSON text under a mutex (srv_http_publish); the HTTP thread copies it.  What
 * the loop does not hold in memory — the running per purifier × attack report
 * and event counts — the HTTP thread reads through read-only SQLite
 * connections of its own (WAL: readers never block the writer), cached and
 * recomputed only when rows changed, at most every REPORT_MIN_S.
 *
 * Bounds.  At most HTTP_CONN_LIMIT connections (HTTP_PER_IP per address), a
 * 10 s idle timeout, HTTP_MEM_LIMIT bytes per connection (longer request lines
 * or headers get 414/431 from libmicrohttpd), GET and HEAD only (405), no body.
 * Off loopback a token is required (Authorization: Bearer T or ?token=T).
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "common/report.h"
#include "internal.h"

#define HTTP_CONN_LIMIT 256
#define HTTP_PER_IP 128
#define HTTP_TIMEOUT_S 10
#define HTTP_MEM_LIMIT (64 * 1024)
#define REPORT_MIN_S 5.0
#define EVENTS_MIN_S 5.0

struct srv_http {
    struct MHD_Daemon *d;
    pthread_mutex_t mu;
    char *snap; /* published by the loop (mu) */
    char token[256];
    int has_token;
    char db_path[4096];
    char addr[300];
    /* the HTTP thread only */
    store *ro;
    sqlite3 *rodb;
    json_t *report; /* {"<sweep id>": [report rows]} */
    char report_key[2048];
    double report_at;
    json_t *events; /* {"kind": count, "lease_expired": n} */
    double events_at;
    /* statistics (HTTP thread) */
    atomic_llong n_requests, n_denied;
    double dur_sum;
    int64_t dur_count;
    int64_t code_count[6]; /* by hundreds: 1xx..5xx */
};

/* ---- the snapshot (loop) -------------------------------------------------------------- */

void srv_http_publish(drq_server *s) {
    struct srv_http *h = s->http;
    if (!h) return;
    json_t *o = json_object();
    json_object_set_new(o, "status", srv_status_json(s, 0, 5));
    json_object_set_new(o, "workers", srv_workers_json(s));
    double now = drq_clock_mono();
    json_t *loop = json_object();
    json_object_set_new(loop, "tick_gap_s", json_real(s->last_tick > 0 ? now - s->last_tick : 0));
    json_object_set_new(loop, "max_tick_gap_s", json_real(s->max_tick_gap));
    json_object_set_new(loop, "storage_fault", json_boolean(s->degraded));
    json_object_set_new(loop, "pumps", json_integer(s->n_pumps));
    json_object_set_new(loop, "transactions", json_integer(s->n_txns));
    json_object_set_new(loop, "worker_messages", json_integer(s->n_msgs));
    json_object_set_new(loop, "curve", json_boolean(s->zap != NULL));
    json_object_set_new(loop, "curve_admitted", json_integer(s->n_zap_ok));
    json_object_set_new(loop, "curve_refused", json_integer(s->n_zap_denied));
    json_object_set_new(loop, "published", json_real(drq_clock_wall()));
    json_object_set_new(o, "loop", loop);
    char *text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(o);
    pthread_mutex_lock(&h->mu);
    char *old = h->snap;
    h->snap = text;
    pthread_mutex_unlock(&h->mu);
    free(old);
}

/* A parsed copy of the latest snapshot (HTTP thread). */
static json_t *snapshot(struct srv_http *h) {
    pthread_mutex_lock(&h->mu);
    json_t *o = h->snap ? json_loads(h->snap, 0, NULL) : NULL;
    pthread_mutex_unlock(&h->mu);
    return o ? o : json_pack("{s:{s:[],s:i},s:[],s:{}}", "status", "sweeps", "workers", 0, "workers", "loop");
}

/* ---- read-only database views (HTTP thread) --------------------------------------------- */

static void report_page(void *arg, const drq_row *rows, int64_t n) {
    for (int64_t i = 0; i < n; i++) drq_report_add(arg, &rows[i]);
}

/* The per-sweep report tables, recomputed when rows_done changed (at most every REPORT_MIN_S). */
static json_t *reports(struct srv_http *h, const json_t *status) {
    char key[2048] = "";
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(status, "sweeps"), i, o) {
        size_t l = strlen(key);
        snprintf(key + l, sizeof key - l, "%lld:%lld,", (long long)json_integer_value(json_object_get(o, "id")),
                 (long long)json_integer_value(json_object_get(o, "rows_done")));
    }
    double now = drq_clock_mono();
    if (h->report && (!strcmp(key, h->report_key) || now - h->report_at < REPORT_MIN_S)) return json_incref(h->report);
    if (!h->ro) {
        drq_err e;
        h->ro = store_open(h->db_path, 1, &e);
        if (!h->ro) {
            log_line("server", "http: report unavailable: %s", e.msg);
            return json_object();
        }
    }
    json_t *r = json_object();
    json_array_foreach(json_object_get(status, "sweeps"), i, o) {
        drq_report *rep = drq_report_new();
        store_results_foreach(h->ro, json_integer_value(json_object_get(o, "id")), report_page, rep);
        char id[32];
        snprintf(id, sizeof id, "%lld", (long long)json_integer_value(json_object_get(o, "id")));
        json_object_set_new(r, id, drq_report_json(rep));
        drq_report_free(rep);
    }
    json_decref(h->report);
    h->report = r;
    h->report_at = now;
    snprintf(h->report_key, sizeof h->report_key, "%s", key);
    return json_incref(r);
}

/* Event counts by kind (cached EVENTS_MIN_S), plus "lease_expired". */
static json_t *events(struct srv_http *h) {
    double now = drq_clock_mono();
    if (h->events && now - h->events_at < EVENTS_MIN_S) return json_incref(h->events);
    if (!h->rodb) {
        if (sqlite3_open_v2(h->db_path, &h->rodb, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
            sqlite3_close(h->rodb);
            h->rodb = NULL;
            return json_object();
        }
        sqlite3_busy_timeout(h->rodb, 2000);
    }
    json_t *o = json_object();
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(h->rodb, "SELECT kind, count(*) FROM events GROUP BY kind", -1, &st, NULL) == SQLITE_OK) {
        while (sqlite3_step(st) == SQLITE_ROW)
            json_object_set_new(o, (const char *)sqlite3_column_text(st, 0), json_integer(sqlite3_column_int64(st, 1)));
        sqlite3_finalize(st);
    }
    if (sqlite3_prepare_v2(h->rodb, "SELECT count(*) FROM events WHERE kind IN ('requeue', 'fail') AND detail LIKE 'lease expired%'", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            json_object_set_new(o, "lease_expired", json_integer(sqlite3_column_int64(st, 0)));
        sqlite3_finalize(st);
    }
    json_decref(h->events);
    h->events = o;
    h->events_at = now;
    return json_incref(o);
}

static double db_bytes(const char *path) {
    struct stat sb;
    double n = 0;
    char p[4200];
    if (stat(path, &sb) == 0) n += (double)sb.st_size;
    snprintf(p, sizeof p, "%s-wal", path);
    if (stat(p, &sb) == 0) n += (double)sb.st_size;
    return n;
}

/* ---- /metrics ---------------------------------------------------------------------------- */

typedef struct {
    char *b;
    size_t n, cap;
} buf;

static void bput(buf *b, const char *fmt, ...) DRQ_PRINTF(2, 3);
static void bput(buf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->b + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (k >= 0 && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        b->cap = b->cap * 2 + (size_t)(k > 0 ? k : 0) + 256;
        b->b = xrealloc(b->b, b->cap);
    }
}

/* A Prometheus label value: backslash, quote and newline escaped (into a static-sized buffer). */
static const char *lbl(const char *s, char *out, size_t n) {
    size_t k = 0;
    for (; s && *s && k + 3 < n; s++) {
        if (*s == '\\' || *s == '"') out[k++] = '\\', out[k++] = *s;
        else if (*s == '\n') out[k++] = '\\', out[k++] = 'n';
        else out[k++] = *s;
    }
    out[k] = 0;
    return out;
}

static void help(buf *b, const char *name, const char *type, const char *text) {
    bput(b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

static char *metrics_text(struct srv_http *h, json_t *snap) {
    buf b = {xmalloc(8192), 0, 8192};
    json_t *st = json_object_get(snap, "status"), *ws = json_object_get(snap, "workers"),
           *loop = json_object_get(snap, "loop");
    json_t *sweeps = json_object_get(st, "sweeps");
    size_t i;
    json_t *o;
    char l1[512], l2[256];
    static const char *states[] = {"queued", "running", "done", "failed", "cancelled"};
    help(&b, "drq_jobs", "gauge", "Jobs of a sweep by state.");
    json_array_foreach(sweeps, i, o) {
        for (int k = 0; k < 5; k++)
            bput(&b, "drq_jobs{sweep=\"%lld\",name=\"%s\",state=\"%s\"} %lld\n",
                 (long long)json_integer_value(json_object_get(o, "id")),
                 lbl(json_string_value(json_object_get(o, "name")), l1, sizeof l1), states[k],
                 (long long)json_integer_value(json_object_get(o, states[k])));
    }
#define PER_SWEEP(metric, type, text, expr)                                                                     \
    help(&b, metric, type, text);                                                                               \
    json_array_foreach(sweeps, i, o) bput(&b, metric "{sweep=\"%lld\"} %.17g\n",                               \
                                          (long long)json_integer_value(json_object_get(o, "id")), (double)(expr));
    PER_SWEEP("drq_sweep_jobs", "gauge", "Jobs of a sweep in all.", json_integer_value(json_object_get(o, "jobs")))
    PER_SWEEP("drq_sweep_rows", "gauge", "Result rows a sweep will have.", json_integer_value(json_object_get(o, "rows")))
    PER_SWEEP("drq_sweep_rows_done", "gauge", "Result rows stored so far.",
              json_integer_value(json_object_get(o, "rows_done")))
    PER_SWEEP("drq_sweep_jobs_per_second", "gauge", "Jobs finished per second (last ~60 s).",
              json_number_value(json_object_get(o, "jobs_per_s")))
    PER_SWEEP("drq_sweep_rows_per_second", "gauge", "Rows stored per second (last ~60 s).",
              json_number_value(json_object_get(o, "rows_per_s")))
    PER_SWEEP("drq_sweep_finished", "gauge", "1 when every job of the sweep is done, failed or cancelled.",
              json_is_true(json_object_get(o, "finished")))
#undef PER_SWEEP
    help(&b, "drq_workers", "gauge", "Registered workers.");
    bput(&b, "drq_workers %zu\n", json_array_size(ws));
    double wall = drq_clock_wall();
    double dead = DRQ_LIVENESS * DRQ_HEARTBEAT_S;
#define PER_WORKER(metric, type, text, fmt, expr)                                                          \
    help(&b, metric, type, text);                                                                          \
    json_array_foreach(ws, i, o) bput(&b, metric "{worker=\"%s\"} " fmt "\n",                             \
                                      lbl(json_string_value(json_object_get(o, "name")), l2, sizeof l2), expr);
    PER_WORKER("drq_worker_up", "gauge", "1 while the worker's heartbeats arrive.", "%d",
               json_number_value(json_object_get(o, "last_seen_s")) < dead)
    PER_WORKER("drq_worker_last_heartbeat_seconds", "gauge", "Seconds since the worker was last heard from.", "%.3f",
               json_number_value(json_object_get(o, "last_seen_s")))
    PER_WORKER("drq_worker_jobs_done_total", "counter", "Jobs the worker finished since it joined.", "%lld",
               (long long)json_integer_value(json_object_get(o, "jobs_done")))
    PER_WORKER("drq_worker_jobs_held", "gauge", "Jobs leased to the worker.", "%zu",
               json_array_size(json_object_get(o, "jobs")))
    PER_WORKER("drq_worker_jobs_per_second", "gauge", "The worker's throughput since it joined.", "%.6g",
               (double)json_integer_value(json_object_get(o, "jobs_done")) /
                   (wall - json_number_value(json_object_get(o, "joined")) > 1
                        ? wall - json_number_value(json_object_get(o, "joined"))
                        : 1))
#undef PER_WORKER
    json_t *ev = events(h);
    help(&b, "drq_events_total", "counter", "Coordinator events by kind (requeue, fail, worker_lost, …).");
    const char *kind;
    json_t *v;
    json_object_foreach(ev, kind, v) {
        if (strcmp(kind, "lease_expired"))
            bput(&b, "drq_events_total{kind=\"%s\"} %lld\n", lbl(kind, l2, sizeof l2), (long long)json_integer_value(v));
    }
    help(&b, "drq_requeues_total", "counter", "Jobs requeued after a failed attempt (lost worker, expired lease, retryable error).");
    bput(&b, "drq_requeues_total %lld\n", (long long)json_integer_value(json_object_get(ev, "requeue")));
    help(&b, "drq_job_failures_total", "counter", "Jobs that failed for good.");
    bput(&b, "drq_job_failures_total %lld\n", (long long)json_integer_value(json_object_get(ev, "fail")));
    help(&b, "drq_lease_expiries_total", "counter", "Leases that expired (owner never came back).");
    bput(&b, "drq_lease_expiries_total %lld\n", (long long)json_integer_value(json_object_get(ev, "lease_expired")));
    help(&b, "drq_workers_lost_total", "counter", "Workers declared lost (missed heartbeats).");
    bput(&b, "drq_workers_lost_total %lld\n", (long long)json_integer_value(json_object_get(ev, "worker_lost")));
    json_decref(ev);
    help(&b, "drq_database_bytes", "gauge", "Size of the SQLite database and its WAL.");
    bput(&b, "drq_database_bytes %.0f\n", db_bytes(h->db_path));
    help(&b, "drq_storage_fault", "gauge", "1 while the database cannot be written (degraded mode).");
    bput(&b, "drq_storage_fault %d\n", json_is_true(json_object_get(loop, "storage_fault")));
    help(&b, "drq_loop_tick_gap_seconds", "gauge", "Time between the last two heartbeat ticks (event loop lag; period 1 s).");
    bput(&b, "drq_loop_tick_gap_seconds %.4f\n", json_number_value(json_object_get(loop, "tick_gap_s")));
    help(&b, "drq_loop_max_tick_gap_seconds", "gauge", "Longest gap between heartbeat ticks since start.");
    bput(&b, "drq_loop_max_tick_gap_seconds %.4f\n", json_number_value(json_object_get(loop, "max_tick_gap_s")));
    help(&b, "drq_worker_messages_total", "counter", "Worker messages applied.");
    bput(&b, "drq_worker_messages_total %lld\n", (long long)json_integer_value(json_object_get(loop, "worker_messages")));
    help(&b, "drq_transactions_total", "counter", "Write transactions committed by the loop.");
    bput(&b, "drq_transactions_total %lld\n", (long long)json_integer_value(json_object_get(loop, "transactions")));
    help(&b, "drq_curve_handshakes_total", "counter", "CURVE handshakes seen by the ZAP handler.");
    bput(&b, "drq_curve_handshakes_total{result=\"admitted\"} %lld\n",
         (long long)json_integer_value(json_object_get(loop, "curve_admitted")));
    bput(&b, "drq_curve_handshakes_total{result=\"refused\"} %lld\n",
         (long long)json_integer_value(json_object_get(loop, "curve_refused")));
    help(&b, "drq_snapshot_age_seconds", "gauge", "Age of the coordinator snapshot served here.");
    bput(&b, "drq_snapshot_age_seconds %.3f\n", wall - json_number_value(json_object_get(loop, "published")));
    help(&b, "drq_http_requests_total", "counter", "HTTP requests answered, by status class.");
    for (int k = 1; k < 6; k++) bput(&b, "drq_http_requests_total{code=\"%dxx\"} %lld\n", k, (long long)h->code_count[k]);
    help(&b, "drq_http_request_duration_seconds", "summary", "Time to build HTTP responses.");
    bput(&b, "drq_http_request_duration_seconds_sum %.6f\ndrq_http_request_duration_seconds_count %lld\n", h->dur_sum,
         (long long)h->dur_count);
    return b.b;
}

/* ---- the dashboard page ------------------------------------------------------------------- */

static const char PAGE_HEAD[] =
    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>drq dashboard</title>\n<style>\n"
    "body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f4f5f7;color:#1d2330}\n"
    "header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;justify-content:space-between;align-items:baseline}\n"
    "header h1{font-size:18px;margin:0}header .meta{font-size:12px;color:#b8c0d0}\n"
    "main{padding:16px 20px;max-width:1400px}\n"
    "section{background:#fff;border-radius:6px;box-shadow:0 1px 2px rgba(0,0,0,.12);padding:12px 16px;margin-bottom:14px}\n"
    "h2{font-size:15px;margin:0 0 8px}\n"
    ".bar{height:18px;background:#e3e6ec;border-radius:9px;overflow:hidden;display:flex;margin:6px 0}\n"
    ".bar div{height:100%}.b-done{background:#2e9d5b}.b-failed{background:#d64545}.b-cancelled{background:#9aa3b2}.b-running{background:#e9a93b}\n"
    ".nums{display:flex;flex-wrap:wrap;gap:18px;font-size:13px}.nums b{font-size:15px}\n"
    ".pct{font-size:22px;font-weight:600}\n"
    "table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eceef2}\n"
    "th{color:#5b6578;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}\n"
    ".err{color:#b02a2a;font-family:ui-monospace,monospace;font-size:12px;white-space:pre-wrap}\n"
    ".fault{background:#b02a2a;color:#fff;padding:8px 20px}.dim{color:#8a93a3}.ok{color:#2e9d5b}.late{color:#d64545}\n"
    "</style></head><body>\n"
    "<header><h1>drq</h1><span class=\"meta\" id=\"meta\">loading…</span></header>\n"
    "<div id=\"fault\"></div><main id=\"main\"><noscript>This page needs JavaScript; the data is at "
    "<a href=\"api/dashboard\">api/dashboard</a>.</noscript></main>\n"
    "<script>\nvar DRQ_INIT = ";

static const char PAGE_TAIL[] =
    ";\n"
    "var TOKEN = new URLSearchParams(location.search).get('token');\n"
    "function esc(s){return String(s==null?'':s).replace(/[&<>\"']/g,function(c){return {'&':'&amp;','<':'&lt;','>':'&gt;','\"':'&quot;',\"'\":'&#39;'}[c];});}\n"
    "function dur(s){if(s==null||!(s>=0))return '-';s=Math.round(s);if(s<120)return s+'s';if(s<7200)return Math.floor(s/60)+'m'+String(s%60).padStart(2,'0')+'s';"
    "if(s<172800)return Math.floor(s/3600)+'h'+String(Math.floor(s%3600/60)).padStart(2,'0')+'m';return Math.floor(s/86400)+'d'+Math.floor(s%86400/3600)+'h';}\n"
    "function pm(x){return x&&x.mean!=null?x.mean.toFixed(1)+'%'+(x.std>0?' ± '+x.std.toFixed(1):''):'-';}\n"
    "function render(d){\n"
    " var st=d.status||{}, sw=st.sweeps||[], ws=d.workers||[], rep=d.report||{}, now=Date.now()/1000, h='';\n"
    " document.getElementById('meta').textContent=(st.server||'')+' · '+sw.length+' sweep(s) · '+ws.length+' worker(s) · updated '+new Date().toLocaleTimeString();\n"
    " document.getElementById('fault').innerHTML=st.storage_fault?'<div class=\"fault\">STORAGE FAULT: the coordinator cannot write its database ('+esc(st.storage_fault)+'); no new work until it can</div>':'';\n"
    " if(!sw.length)h+='<section><h2>No sweeps yet</h2><span class=\"dim\">drq submit SPEC.json queues one.</span></section>';\n"
    " sw.forEach(function(s){\n"
    "  var fin=s.done+s.failed+s.cancelled, pct=s.jobs?100*fin/s.jobs:100, state=s.state==='cancelled'?'cancelled':s.finished?(s.failed?'finished with failures':'finished'):s.state==='expanding'?'expanding':'running';\n"
    "  function seg(n,c){return s.jobs&&n?'<div class=\"'+c+'\" style=\"width:'+(100*n/s.jobs)+'%\"></div>':'';}\n"
    "  h+='<section class=\"sweep\" id=\"sweep-'+s.id+'\"><h2>sweep '+s.id+' “'+esc(s.name)+'” <span class=\"dim\">'+state+'</span></h2>';\n"
    "  h+='<div class=\"nums\"><span class=\"pct progress\" id=\"progress-'+s.id+'\">'+pct.toFixed(1)+'%</span><span>'+fin+' / '+s.jobs+' jobs</span>'"
    "+'<span>rows '+s.rows_done+' / '+s.rows+'</span><span>rate <b>'+(s.jobs_per_s||0).toFixed(2)+'</b> jobs/s ('+(s.rows_per_s||0).toFixed(1)+' rows/s)</span><span>ETA <b>'+dur(s.eta_s)+'</b></span></div>';\n"
    "  h+='<div class=\"bar\">'+seg(s.done,'b-done')+seg(s.failed,'b-failed')+seg(s.cancelled,'b-cancelled')+seg(s.running,'b-running')+'</div>';\n"
    "  h+='<div class=\"nums\"><span>queued <b>'+s.queued+'</b></span><span>running <b>'+s.running+'</b></span><span class=\"ok\">done <b>'+s.done+'</b></span>'"
    "+'<span class=\"late\">failed <b>'+s.failed+'</b></span><span>cancelled <b>'+s.cancelled+'</b></span></div>';\n"
    "  var r=rep[String(s.id)]||[];\n"
    "  if(r.length){h+='<h2 style=\"margin-top:12px\">accuracy so far (per purifier × attack)</h2><table class=\"report\"><tr><th>purifier</th><th>attack</th><th>seeds</th><th>images</th><th>clean acc</th><th>robust acc</th></tr>';\n"
    "   r.forEach(function(g){h+='<tr><td>'+esc(g.purifier)+'</td><td>'+esc(g.attack)+'</td><td class=\"n\">'+g.seeds+'</td><td class=\"n\">'+g.images+'</td><td class=\"n\">'+pm(g.clean_acc)+'</td><td class=\"n\">'+pm(g.robust_acc)+'</td></tr>';});\n"
    "   h+='</table>';}\n"
    "  var f=s.failures||[];\n"
    "  if(f.length){h+='<h2 style=\"margin-top:12px\">recent failures</h2><table class=\"failures\"><tr><th>when</th><th>job</th><th>worker</th><th>kind</th><th>error</th></tr>';\n"
    "   f.forEach(function(e){h+='<tr><td>'+dur(now-e.t)+' ago</td><td class=\"n\">'+e.job+'</td><td>'+esc(e.worker||'-')+'</td><td>'+esc(e.kind)+'</td><td class=\"err\">'+esc(e.error)+'</td></tr>';});\n"
    "   h+='</table>';}\n"
    "  h+='</section>';});\n"
    " h+='<section><h2>workers</h2>';\n"
    " if(!ws.length)h+='<span class=\"dim\">no worker connected</span>';\n"
    " else{h+='<table id=\"workers\"><tr><th>worker</th><th>device</th><th>current job (images)</th><th>last heartbeat</th><th>jobs done</th><th>throughput</th></tr>';\n"
    "  ws.forEach(function(w){var up=Math.max(1,now-w.joined), j=(w.jobs||[]).map(function(x){return x.job+' ('+x.done+'/'+x.total+')';}).join(', ')||'-';\n"
    "   h+='<tr class=\"worker-row\"><td>'+esc(w.name)+'</td><td>'+esc((w.devices||[]).join(', '))+'</td><td>'+esc(j)+'</td><td class=\"'+(w.last_seen_s<3?'ok':'late')+'\">'+w.last_seen_s.toFixed(1)+' s ago</td>'"
    "+'<td class=\"n\">'+w.jobs_done+'</td><td class=\"n\">'+(60*w.jobs_done/up).toFixed(1)+' jobs/min</td></tr>';});\n"
    "  h+='</table>';}\n"
    " h+='</section>';\n"
    " var L=d.loop||{}; h+='<section class=\"dim\" style=\"font-size:12px\">event loop: tick gap '+(L.tick_gap_s||0).toFixed(2)+' s (longest '+(L.max_tick_gap_s||0).toFixed(2)+' s) · CURVE '+(L.curve?'on':'off')+' · <a href=\"metrics\">/metrics</a> · <a href=\"api/status\">/api/status</a></section>';\n"
    " document.getElementById('main').innerHTML=h;\n"
    "}\n"
    "function refresh(){var u='api/dashboard'+(TOKEN?'?token='+encodeURIComponent(TOKEN):'');\n"
    " fetch(u,{cache:'no-store'}).then(function(r){if(!r.ok)throw new Error('HTTP '+r.status);return r.json();}).then(render)"
    ".catch(function(e){document.getElementById('meta').textContent='cannot reach drq-server: '+e.message;});}\n"
    "render(DRQ_INIT);\nsetInterval(refresh,2000);\n"
    "</script></body></html>\n";

/* ---- requests ----------------------------------------------------------------------------- */

static json_t *dashboard_json(struct srv_http *h) {
    json_t *snap = snapshot(h);
    json_object_set_new(snap, "report", reports(h, json_object_get(snap, "status")));
    return snap;
}

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned code, const char *type, char *body, int owned,
                                 struct srv_http *h) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body,
                                                             owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        if (owned) free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                            "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'");
    if (code == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(r, "Allow", "GET, HEAD");
    if (code == MHD_HTTP_UNAUTHORIZED) MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"drq\"");
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    if (code / 100 < 6) h->code_count[code / 100]++;
    return ret;
}

/* Constant-time comparison of a presented token. */
static int token_ok(struct srv_http *h, const char *t) {
    if (!t) return 0;
    size_t n = strlen(h->token), m = strlen(t);
    unsigned char d = (unsigned char)(n != m);
    for (size_t i = 0; i < n; i++) d |= (unsigned char)(h->token[i] ^ (i < m ? t[i] : 0));
    return d == 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size, void **con_cls) {
    struct srv_http *h = cls;
    static int marker;
    if (!*con_cls) { /* headers only so far */
        *con_cls = &marker;
        return MHD_YES;
    }
    if (*upload_size) { /* a body: ignored (refused below) */
        *upload_size = 0;
        return MHD_YES;
    }
    double t0 = drq_clock_mono();
    atomic_fetch_add(&h->n_requests, 1);
    enum MHD_Result ret;
    if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
        ret = send_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8",
                        "405 method not allowed: this endpoint is read-only (GET, HEAD)\n", 0, h);
        goto done;
    }
    if (h->has_token) {
        const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        const char *q = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "token");
        int ok = (auth && !strncmp(auth, "Bearer ", 7) && token_ok(h, auth + 7)) || token_ok(h, q);
        if (!ok) {
            atomic_fetch_add(&h->n_denied, 1);
            ret = send_text(c, MHD_HTTP_UNAUTHORIZED, "text/plain; charset=utf-8",
                            "401 a token is required: Authorization: Bearer TOKEN or ?token=TOKEN\n", 0, h);
            goto done;
        }
    }
    if (!strcmp(url, "/") || !strcmp(url, "/index.html")) {
        json_t *d = dashboard_json(h);
        char *j = json_dumps(d, JSON_COMPACT | JSON_ESCAPE_SLASH | JSON_REAL_PRECISION(10));
        json_decref(d);
        size_t n = sizeof PAGE_HEAD + strlen(j) + sizeof PAGE_TAIL;
        char *page = xmalloc(n);
        snprintf(page, n, "%s%s%s", PAGE_HEAD, j, PAGE_TAIL);
        free(j);
        ret = send_text(c, MHD_HTTP_OK, "text/html; charset=utf-8", page, 1, h);
    } else if (!strcmp(url, "/api/status") || !strcmp(url, "/api/status.json")) {
        json_t *snap = snapshot(h);
        char *j = json_dumps(json_object_get(snap, "status"), JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        json_decref(snap);
        size_t l = strlen(j);
        j = xrealloc(j, l + 2);
        memcpy(j + l, "\n", 2);
        ret = send_text(c, MHD_HTTP_OK, "application/json", j, 1, h);
    } else if (!strcmp(url, "/api/dashboard")) {
        json_t *d = dashboard_json(h);
        char *j = json_dumps(d, JSON_COMPACT | JSON_REAL_PRECISION(10));
        json_decref(d);
        ret = send_text(c, MHD_HTTP_OK, "application/json", j, 1, h);
    } else if (!strcmp(url, "/metrics")) {
        json_t *snap = snapshot(h);
        char *m = metrics_text(h, snap);
        json_decref(snap);
        ret = send_text(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", m, 1, h);
    } else {
        ret = send_text(c, MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8",
                        "404 not found: / (dashboard), /api/status, /api/dashboard, /metrics\n", 0, h);
    }
done:
    h->dur_sum += drq_clock_mono() - t0;
    h->dur_count++;
    return ret;
}

/* ---- life cycle ---------------------------------------------------------------------------- */

int srv_http_start(drq_server *s, drq_err *err) {
    const char *a = s->o.http_addr;
    char host[256], port[16];
    const char *colon = strrchr(a, ':');
    if (!colon || colon == a || strlen(colon + 1) == 0 || strlen(colon + 1) >= sizeof port ||
        (size_t)(colon - a) >= sizeof host)
        return drq_errf(err, "--http %s: expected HOST:PORT, e.g. 127.0.0.1:8080", a);
    const char *h0 = a;
    size_t hl = (size_t)(colon - a);
    if (h0[0] == '[' && hl >= 2 && h0[hl - 1] == ']') h0++, hl -= 2;
    memcpy(host, h0, hl);
    host[hl] = 0;
    snprintf(port, sizeof port, "%s", colon + 1);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai;
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai) return drq_errf(err, "--http %s: %s", a, gai_strerror(gai));
    int loopback = 0;
    if (ai->ai_family == AF_INET)
        loopback = (ntohl(((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr) >> 24) == 127;
    else if (ai->ai_family == AF_INET6)
        loopback = IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr);
    if (!loopback && !s->o.http_token) {
        freeaddrinfo(ai);
        return drq_errf(err, "--http %s is not a loopback address: give --http-token TOKEN (or DRQ_HTTP_TOKEN) so that "
                             "only holders of the token can read the dashboard (docs/dashboard.md)", a);
    }
    struct srv_http *h = xcalloc(1, sizeof *h);
    pthread_mutex_init(&h->mu, NULL);
    snprintf(h->db_path, sizeof h->db_path, "%s", s->o.db_path);
    snprintf(h->addr, sizeof h->addr, "%s", a);
    if (s->o.http_token) {
        if (strlen(s->o.http_token) < 8 || strlen(s->o.http_token) >= sizeof h->token) {
            freeaddrinfo(ai);
            free(h);
            return drq_errf(err, "--http-token: expected 8 to 255 characters");
        }
        snprintf(h->token, sizeof h->token, "%s", s->o.http_token);
        h->has_token = 1;
    }
    s->http = h;
    srv_http_publish(s); /* a first snapshot before the first request */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    h->d = MHD_start_daemon(flags, (uint16_t)atoi(port), NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR,
                            ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_CONN_LIMIT,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)HTTP_PER_IP, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)HTTP_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_MEM_LIMIT,
                            MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!h->d) {
        srv_http_free(s);
        return drq_errf(err, "--http %s: cannot listen (port in use, or not an address of this host)", a);
    }
    log_line("server", "http: dashboard on http://%s/ (/api/status, /metrics)%s", a,
             h->has_token ? ", token required" : "");
    return 0;
}

void srv_http_free(drq_server *s) {
    struct srv_http *h = s->http;
    if (!h) return;
    if (h->d) MHD_stop_daemon(h->d); /* joins its thread */
    s->http = NULL;
    store_close(h->ro);
    if (h->rodb) sqlite3_close(h->rodb);
    json_decref(h->report);
    json_decref(h->events);
    free(h->snap);
    pthread_mutex_destroy(&h->mu);
    free(h);
}
