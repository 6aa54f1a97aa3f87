// Node's own libuv TCP handles, the C++ objects a net.Socket wraps, for the
// userspace proxy's fast data path (tcp-handles.ts). A proxied short connection
// through net.Socket costs about 110–130 µs of JavaScript (two Duplex streams,
// their Readable/Writable state, EventEmitters, nextTick hops) on top of the
// 60–80 µs the kernel needs; on the bare handles the JavaScript part is about
// 20 µs, which is what closes most of the gap to HAProxy. The handles are not
// a public API (process.binding, DEP0111, documentation-only deprecation), so
// every member the fast path uses is checked here first: if any is missing or
// differently shaped (another Node major), rawTcp() returns undefined and the
// proxy uses the net.Socket path (tcp-net.ts), which behaves the same.
import { getSystemErrorMap, getSystemErrorName } from 'node:util';

/** The fields libuv's callbacks hand back; a pending request keeps what it needs to find its connection. */
export interface ConnectReq {
  oncomplete: (this: ConnectReq, status: number, handle: TcpHandle, req: ConnectReq, readable: boolean, writable: boolean) => void;
  address?: string;
  port?: number;
  owner?: unknown;
}

export interface WriteReq {
  oncomplete: (this: WriteReq, status: number) => void;
  handle?: TcpHandle;
  async?: boolean;
  /** Kept alive while libuv still sends from it. */
  buffer?: Uint8Array | null;
  owner?: unknown;
}

export interface ShutdownReq {
  oncomplete: (this: ShutdownReq, status: number) => void;
  handle?: TcpHandle;
  owner?: unknown;
}

export interface TcpHandle {
  /** Called with `this` = the handle; the result is in RawTcp.state. */
  onread: ((this: TcpHandle, ab: ArrayBuffer | undefined) => void) | null;
  onconnection: ((this: TcpHandle, status: number, client: TcpHandle | undefined) => void) | null;
  readStart(): number;
  readStop(): number;
  writeBuffer(req: WriteReq, data: Uint8Array): number;
  shutdown(req: ShutdownReq): number;
  connect(req: ConnectReq, ip: string, port: number): number;
  connect6(req: ConnectReq, ip: string, port: number): number;
  bind(ip: string, port: number): number;
  bind6(ip: string, port: number, flags: number): number;
  listen(backlog: number): number;
  getsockname(out: Record<string, unknown>): number;
  getpeername(out: Record<string, unknown>): number;
  setNoDelay(on: boolean): number;
  close(cb?: () => void): void;
  /** Closes with an RST (SO_LINGER 0), like net.Socket#resetAndDestroy. */
  reset(cb?: () => void): number;
  /** Ours: the object the handle belongs to (connection or listener). */
  owner?: unknown;
}

export interface RawTcp {
  socket(): TcpHandle;
  server(): TcpHandle;
  connectReq(): ConnectReq;
  writeReq(): WriteReq;
  shutdownReq(): ShutdownReq;
  /** streamBaseState: the result of the last read/write call. */
  state: Int32Array;
  kReadBytesOrError: number;
  kArrayBufferOffset: number;
  kLastWriteWasAsync: number;
  UV_EOF: number;
}

type Ctor<T> = new (arg?: number) => T;

let cached: RawTcp | null | undefined;

/** The handle layer, or undefined when this Node does not offer it in the shape used here. */
export function rawTcp(): RawTcp | undefined {
  if (cached !== undefined) return cached ?? undefined;
  cached = null;
  try {
    const binding = (process as unknown as { binding?: (name: string) => Record<string, unknown> }).binding;
    if (typeof binding !== 'function') return undefined;
    const tcp = binding('tcp_wrap') as { TCP?: Ctor<TcpHandle>; TCPConnectWrap?: Ctor<ConnectReq>; constants?: { SOCKET?: number; SERVER?: number } };
    const sw = binding('stream_wrap') as {
      WriteWrap?: Ctor<WriteReq>;
      ShutdownWrap?: Ctor<ShutdownReq>;
      streamBaseState?: unknown;
      kReadBytesOrError?: unknown;
      kArrayBufferOffset?: unknown;
      kLastWriteWasAsync?: unknown;
    };
    const { TCP, TCPConnectWrap, constants } = tcp;
    const { WriteWrap, ShutdownWrap, streamBaseState } = sw;
    if (typeof TCP !== 'function' || typeof TCPConnectWrap !== 'function' || typeof WriteWrap !== 'function' || typeof ShutdownWrap !== 'function') return undefined;
    if (typeof constants?.SOCKET !== 'number' || typeof constants.SERVER !== 'number') return undefined;
    if (!(streamBaseState instanceof Int32Array)) return undefined;
    const idx = [sw.kReadBytesOrError, sw.kArrayBufferOffset, sw.kLastWriteWasAsync];
    if (!idx.every((i) => typeof i === 'number' && i >= 0 && i < streamBaseState.length)) return undefined;
    const methods = ['readStart', 'readStop', 'writeBuffer', 'shutdown', 'connect', 'connect6', 'bind', 'bind6', 'listen', 'getsockname', 'getpeername', 'setNoDelay', 'close', 'reset'];
    const probe = new TCP(constants.SOCKET) as unknown as Record<string, unknown>;
    const ok = methods.every((m) => typeof probe[m] === 'function') && 'onread' in probe;
    (probe as unknown as TcpHandle).close();
    if (!ok) return undefined;
    let eof: number | undefined;
    for (const [code, [name]] of getSystemErrorMap()) if (name === 'EOF') eof = code;
    if (eof === undefined) return undefined;
    const SOCKET = constants.SOCKET;
    const SERVER = constants.SERVER;
    cached = {
      socket: () => new TCP(SOCKET),
      server: () => new TCP(SERVER),
      connectReq: () => new TCPConnectWrap(),
      writeReq: () => new WriteWrap(),
      shutdownReq: () => new ShutdownWrap(),
      state: streamBaseState,
      kReadBytesOrError: sw.kReadBytesOrError as number,
      kArrayBufferOffset: sw.kArrayBufferOffset as number,
      kLastWriteWasAsync: sw.kLastWriteWasAsync as number,
      UV_EOF: eof,
    };
    return cached;
  } catch {
    return undefined;
  }
}

/** A libuv status as the Error net would raise (code EADDRINUSE etc.). */
export function uvError(status: number, syscall: string, detail?: string): NodeJS.ErrnoException {
  let name = `E${-status}`;
  try {
    name = getSystemErrorName(status);
  } catch {
    /* not a known code */
  }
  const text = getSystemErrorMap().get(status)?.[1] ?? 'unknown error';
  const e = new Error(`${syscall} ${name}: ${text}${detail ? ` ${detail}` : ''}`) as NodeJS.ErrnoException;
  e.code = name;
  e.errno = status;
  e.syscall = syscall;
  return e;
}
