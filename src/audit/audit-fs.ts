// The file-system calls the audit writer makes, behind a small interface so tests can
// inject ENOSPC, EIO or a write that never returns. The default works on numeric file
// descriptors (positional fs.write on files opened O_DSYNC; fs.fsync for the rest), so
// the writer controls every byte, every offset and every flush.

import * as fs from 'node:fs';
import { promisify } from 'node:util';

export interface AuditFs {
  mkdir(path: string): Promise<void>;
  readdir(path: string): Promise<string[]>;
  /** Size in bytes and whether the path is a regular file. */
  stat(path: string): Promise<{ size: number; isFile: boolean }>;
  /**
   * Open for writing at explicit offsets (not O_APPEND: the writer keeps zero-filled
   * space ahead of its records, see writer.ts); `exclusive` fails when the file exists.
   * With `syncedWrites` every write is durable when it returns (O_DSYNC).
   */
  openWrite(path: string, exclusive: boolean): Promise<number>;
  /**
   * True when writes to descriptors from `openWrite` are durable on return (data and
   * the metadata needed to read it back, as after fdatasync): the writer then makes a
   * batch durable with its write alone, one trip to the thread pool instead of two.
   */
  readonly syncedWrites?: boolean;
  openRead(path: string): Promise<number>;
  /** Write `buf[offset, offset+length)` at file offset `position`; resolves with the bytes written (may be short). */
  write(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number>;
  read(fd: number, buf: Buffer, position: number): Promise<number>;
  fsync(fd: number): Promise<void>;
  close(fd: number): Promise<void>;
  /** Flush a directory entry (a new file) to disk. */
  fsyncDir(path: string): Promise<void>;
  /** Remove a file (only ever an empty file the writer itself just created). */
  unlink?(path: string): Promise<void>;
  /**
   * Cut a file to `length` bytes (the writer drops its unused zero-filled space at
   * rotation and stop). Without it the writer reserves no space and only appends.
   */
  truncate?(fd: number, length: number): Promise<void>;
}

const pOpen = promisify(fs.open);
const pWrite = (fd: number, b: Buffer, o: number, l: number, p: number): Promise<number> =>
  new Promise((resolve, reject) => fs.write(fd, b, o, l, p, (err, n) => (err ? reject(err) : resolve(n))));
const pRead = (fd: number, b: Buffer, p: number): Promise<number> =>
  new Promise((resolve, reject) =>
    fs.read(fd, b, 0, b.length, p, (err, n) => (err ? reject(err) : resolve(n))),
  );
const pFsync = promisify(fs.fsync);
const pClose = promisify(fs.close);
const pFtruncate = promisify(fs.ftruncate);

export const nodeAuditFs: AuditFs = {
  async mkdir(path) {
    await fs.promises.mkdir(path, { recursive: true, mode: 0o700 });
  },
  readdir: (path) => fs.promises.readdir(path),
  async stat(path) {
    const s = await fs.promises.stat(path);
    return { size: s.size, isFile: s.isFile() };
  },
  // O_DSYNC: each write returns once its bytes (and the file size) are on stable storage,
  // as write + fdatasync would, in one thread-pool request. Under load the second trip
  // (the fsync's own request and its completion on the event loop) cost each batch a
  // turn of the loop.
  openWrite: (path, exclusive) =>
    pOpen(
      path,
      fs.constants.O_WRONLY |
        fs.constants.O_CREAT |
        fs.constants.O_DSYNC |
        (exclusive ? fs.constants.O_EXCL : 0),
      0o600,
    ),
  syncedWrites: true,
  openRead: (path) => pOpen(path, 'r'),
  write: (fd, buf, offset, length, position) => pWrite(fd, buf, offset, length, position),
  read: (fd, buf, position) => pRead(fd, buf, position),
  fsync: (fd) => pFsync(fd),
  close: (fd) => pClose(fd),
  unlink: (path) => fs.promises.unlink(path),
  truncate: (fd, length) => pFtruncate(fd, length),
  async fsyncDir(path) {
    const fd = await pOpen(path, 'r');
    try {
      await pFsync(fd);
    } finally {
      await pClose(fd);
    }
  },
};
