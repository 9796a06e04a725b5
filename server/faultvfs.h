/* faultvfs.h — storage-fault injection for tests, SQLite's own way: a VFS
 * shim over the default VFS whose xWrite / xSync fail with SQLITE_FULL or
 * SQLITE_IOERR when told to.  It is registered (as the default VFS) only when
 * $DRQ_FAULT_VFS is set (store_open checks once per process) or a test calls
 * drq_faultvfs_config; production runs never see it.
 *
 * Configuration: comma-separated key=value pairs, e.g.
 *   DRQ_FAULT_VFS="err=full,op=write,while=/tmp/disk-full"
 *   err=full|ioerr      SQLITE_FULL (disk full) or SQLITE_IOERR_WRITE/_FSYNC
 *   op=write|sync|any   which calls fail (default write)
 *   while=PATH          fail every such call while PATH exists (the test
 *                       "fills the disk" by creating it, "frees space" by
 *                       removing it); otherwise:
 *   after=N,count=K     the calls numbered N+1 … N+K fail (count -1: all
 *                       after N; default after=0, count=1)
 * docs/robustness.md ("Storage faults") describes the tests built on it.
 */
#ifndef DRQ_FAULTVFS_H
#define DRQ_FAULTVFS_H

/* Registers the shim as the default VFS (once) and sets its configuration;
 * NULL or "" turns injection off.  Returns 0, or -1 for a malformed string. */
int drq_faultvfs_config(const char *spec);
/* How many calls the shim has failed so far. */
long drq_faultvfs_injected(void);

#endif
