//! The standard WASI 0.2 interfaces that language toolchains add to every
//! component (componentize-py, jco / ComponentizeJS, TinyGo, Rust's std),
//! provided so that a run stays deterministic and sandboxed
//! (`docs/interface.md` §7.1):
//!
//! - clocks answer from the host's clock service (the instance's `now_ms`,
//!   virtual time in the simulator); a pollable is always ready (time does
//!   not pass during a call);
//! - random, insecure random and the insecure seed come from the
//!   instance's seeded SplitMix64 stream, the one behind `random.next-u64`;
//! - environment and arguments are empty, there is no working directory and
//!   no terminal; `exit` ends the call as a crash naming the status;
//! - stdout and stderr go to the event log (kinds `stdout` and `stderr`,
//!   at most [`MAX_STDIO_BYTES_PER_CALL`] bytes per call); stdin is at its
//!   end;
//! - filesystem, sockets and HTTP exist but hold nothing: no preopened
//!   directory, and every operation that can fail returns its interface's
//!   error (`access`, `access-denied`, `HTTP-request-denied`, stream
//!   `closed`), never a trap; a function with no error result (a resource
//!   constructor) traps naming itself.
//!
//! Hand-written rather than wasmtime-wasi's implementation: that crate
//! needs wasmtime's `async` feature (a rebuild of the engine for every
//! crate), tokio file and socket support and a resource table in the store,
//! all to then be configured down to this; here every answer is a pure
//! function of the instance's state. Only the functions a component
//! actually imports are defined, by their exact versioned names, so any
//! WASI 0.2.x a toolchain targets links.

use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::component::types::{ComponentFunc, ComponentItem, Type};
use wasmtime::component::{Component, Linker, ResourceDynamic, ResourceType, Val};
use wasmtime::{Engine, StoreContextMut};

use crate::bindings::nodeplane::control::random::Host as _;
use crate::host_state::HostState;
use nodeplane_types::Effect;

/// The WASI packages a component may import (WASI 0.2.x only): what the
/// language toolchains add (ComponentizeJS adds `wasi:http` for `fetch`).
/// Anything else is refused.
pub(crate) const ALLOWED_WASI: &[&str] = &[
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:io/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
    "wasi:http/",
];

/// The WASI version accepted: 0.2.x, the preview 2 every toolchain named
/// above targets (0.3 is async and not supported).
const WASI_VERSION: &str = "@0.2.";

/// Most bytes of stdout and stderr together that one call records in the
/// event log: a Python traceback or a JavaScript error with its stack fits
/// (a few KiB), while a component printing in a loop cannot flood the
/// node's event log (bounded by rotation, but shared with every other
/// decision the node logs). What is cut is counted
/// ([`stdio_dropped_bytes`]) and marked once per call (`stdio-truncated`).
pub const MAX_STDIO_BYTES_PER_CALL: usize = 8 << 10;

/// Most bytes one `get-random-bytes` call may ask for. Toolchains ask for
/// 16 to 64 (hash seeds); a larger request is a guest bug and traps with a
/// reason naming it rather than making the host allocate what the guest
/// names.
pub const MAX_RANDOM_BYTES_PER_REQUEST: u64 = 1 << 20;

/// Fuel charged per byte a WASI call moves (random bytes made, output
/// written), so that host work stays inside the call's instruction budget:
/// a guest cannot loop on a cheap import to make the host do unbounded
/// work without running out of fuel.
const FUEL_PER_BYTE: u64 = 1;

/// Fuel charged for every WASI call, about the cost of a small guest
/// function.
const FUEL_PER_CALL: u64 = 100;

/// What a `subscribe`, a stream getter or `instance-network` hands out:
/// resource representations of the host's fixed, stateless objects.
const STDIN: u32 = 0;
const STDOUT: u32 = 1;
const STDERR: u32 = 2;
const ANY: u32 = 3;

static STDIO_DROPPED: AtomicU64 = AtomicU64::new(0);

/// Bytes of stdout/stderr dropped by [`MAX_STDIO_BYTES_PER_CALL`] since the
/// process started.
pub fn stdio_dropped_bytes() -> u64 {
    STDIO_DROPPED.load(Ordering::Relaxed)
}

/// Whether `import` (a versioned interface name) is a WASI interface the
/// host provides.
pub(crate) fn is_provided(import: &str) -> bool {
    ALLOWED_WASI.iter().any(|p| import.starts_with(p)) && import.contains(WASI_VERSION)
}

/// The import without its `@version`.
fn unversioned(import: &str) -> &str {
    import.split('@').next().unwrap_or(import)
}

/// Stable type ids of the WASI resources (`ResourceType::host_dynamic`):
/// each resource name its own type, the same in every interface version.
fn resource_type(name: &str) -> ResourceType {
    ResourceType::host_dynamic(resource_id(name))
}

/// The `host_dynamic` payload of [`resource_type`].
fn resource_id(name: &str) -> u32 {
    const NAMES: &[&str] = &[
        "error",
        "pollable",
        "input-stream",
        "output-stream",
        "descriptor",
        "directory-entry-stream",
        "network",
        "tcp-socket",
        "udp-socket",
        "incoming-datagram-stream",
        "outgoing-datagram-stream",
        "resolve-address-stream",
        "terminal-input",
        "terminal-output",
    ];
    let index = NAMES.iter().position(|n| *n == name).unwrap_or(NAMES.len());
    u32::try_from(index).unwrap_or(u32::MAX)
}

/// What one imported WASI function does.
#[derive(Clone)]
enum Behaviour {
    /// Monotonic clock: the host's time in nanoseconds.
    MonotonicNow,
    /// Wall clock: the host's time as a `datetime`.
    WallNow,
    /// Clock resolution: one millisecond (as a duration in nanoseconds).
    MonotonicResolution,
    /// Clock resolution: one millisecond (as a `datetime`).
    WallResolution,
    /// Random bytes from the seeded stream.
    RandomBytes,
    /// A random u64 from the seeded stream.
    RandomU64,
    /// Two random u64 from the seeded stream.
    InsecureSeed,
    /// Returns a handle to one of the host's fixed objects.
    Handle(&'static str, u32),
    /// `check-write`: room for a whole per-call budget.
    CheckWrite,
    /// `write` to stdout/stderr: to the event log.
    Write,
    /// `poll`: every pollable is ready.
    PollAll,
    /// `to-debug-string` of an error.
    DebugString,
    /// `exit`: the call ends as a crash naming the status.
    Exit(String),
    /// A fixed answer (empty list, `none`, `true`, `ok`, an error code).
    Constant(Option<Val>),
    /// Not provided: traps naming the function.
    Trap(String),
}

/// Defines every WASI interface `component` imports that the host provides
/// (see the module documentation).
pub(crate) fn define(
    linker: &mut Linker<HostState>,
    engine: &Engine,
    component: &Component,
) -> wasmtime::Result<()> {
    for (import, item) in component.component_type().imports(engine) {
        if !is_provided(import) {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        let interface = unversioned(import);
        let mut defined = linker.instance(import)?;
        for (name, export) in instance.exports(engine) {
            match export.ty {
                ComponentItem::ComponentFunc(ty) => {
                    let behaviour = behaviour(interface, name, &ty, import);
                    defined.func_new(name, move |store, _, params, results| {
                        call(&behaviour, store, params, results)
                    })?;
                }
                ComponentItem::Resource(_) => {
                    defined.resource(name, resource_type(name), |_, _| Ok(()))?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Decides, once at link time, what `interface#name` does.
fn behaviour(interface: &str, name: &str, ty: &ComponentFunc, import: &str) -> Behaviour {
    use Behaviour::*;
    match (interface, name) {
        ("wasi:clocks/monotonic-clock", "now") => MonotonicNow,
        ("wasi:clocks/monotonic-clock", "resolution") => MonotonicResolution,
        ("wasi:clocks/monotonic-clock", "subscribe-instant" | "subscribe-duration") => {
            Handle("pollable", ANY)
        }
        ("wasi:clocks/wall-clock", "now") => WallNow,
        ("wasi:clocks/wall-clock", "resolution") => WallResolution,
        ("wasi:random/random", "get-random-bytes")
        | ("wasi:random/insecure", "get-insecure-random-bytes") => RandomBytes,
        ("wasi:random/random", "get-random-u64")
        | ("wasi:random/insecure", "get-insecure-random-u64") => RandomU64,
        ("wasi:random/insecure-seed", "insecure-seed") => InsecureSeed,
        ("wasi:cli/environment", "get-environment" | "get-arguments") => {
            Constant(Some(Val::List(Vec::new())))
        }
        ("wasi:cli/exit", _) => Exit(format!("{import}#{name}")),
        ("wasi:cli/stdin", "get-stdin") => Handle("input-stream", STDIN),
        ("wasi:cli/stdout", "get-stdout") => Handle("output-stream", STDOUT),
        ("wasi:cli/stderr", "get-stderr") => Handle("output-stream", STDERR),
        ("wasi:io/poll", "[method]pollable.ready") => Constant(Some(Val::Bool(true))),
        ("wasi:io/poll", "[method]pollable.block") => Constant(None),
        ("wasi:io/poll", "poll") => PollAll,
        ("wasi:io/error", "[method]error.to-debug-string") => DebugString,
        ("wasi:io/streams", "[method]output-stream.check-write") => CheckWrite,
        (
            "wasi:io/streams",
            "[method]output-stream.write" | "[method]output-stream.blocking-write-and-flush",
        ) => Write,
        (
            "wasi:io/streams",
            "[method]output-stream.flush"
            | "[method]output-stream.blocking-flush"
            | "[method]output-stream.write-zeroes"
            | "[method]output-stream.blocking-write-zeroes-and-flush",
        ) => Constant(Some(Val::Result(Ok(None)))),
        (
            "wasi:io/streams",
            "[method]input-stream.subscribe" | "[method]output-stream.subscribe",
        ) => Handle("pollable", ANY),
        ("wasi:filesystem/preopens", "get-directories") => Constant(Some(Val::List(Vec::new()))),
        ("wasi:sockets/instance-network", "instance-network") => Handle("network", ANY),
        _ => failure(ty).unwrap_or_else(|| {
            Trap(format!(
                "`{import}#{name}` is not provided: a control plane has no files, network or \
                 terminal (docs/interface.md §7.1)"
            ))
        }),
    }
}

/// The clean failure of a function the host does not implement, from its
/// result type: its `error-code`'s denial (`access`, `access-denied`, ...),
/// a stream's `closed`, or `none`. `None` if the type has no such answer.
fn failure(ty: &ComponentFunc) -> Option<Behaviour> {
    /// Error-code cases, most fitting first: the host denies access.
    const DENIALS: &[&str] = &[
        "access-denied",
        "access",
        "not-permitted",
        "not-supported",
        "unsupported",
        "HTTP-request-denied",
        "closed",
    ];
    let mut results = ty.results();
    let (Some(result), None) = (results.next(), results.next()) else {
        return None;
    };
    match result {
        Type::Option(_) => Some(Behaviour::Constant(Some(Val::Option(None)))),
        Type::Result(result) => {
            let error = match result.err()? {
                Type::Enum(codes) => {
                    let names: Vec<&str> = codes.names().collect();
                    let code = DENIALS.iter().find(|d| names.contains(d))?;
                    Val::Enum((*code).to_string())
                }
                Type::Variant(variant) => {
                    let names: Vec<&str> = variant
                        .cases()
                        .filter(|case| case.ty.is_none())
                        .map(|case| case.name)
                        .collect();
                    let code = DENIALS.iter().find(|d| names.contains(d))?;
                    Val::Variant((*code).to_string(), None)
                }
                _ => return None,
            };
            Some(Behaviour::Constant(Some(Val::Result(Err(Some(Box::new(
                error,
            )))))))
        }
        _ => None,
    }
}

/// Takes `units` of fuel from the running call; out of fuel traps as the
/// guest's own instructions would.
fn charge(store: &mut StoreContextMut<'_, HostState>, units: u64) -> wasmtime::Result<()> {
    let fuel = store.get_fuel()?;
    match fuel.checked_sub(units) {
        Some(left) => store.set_fuel(left),
        None => {
            store.set_fuel(0)?;
            Err(wasmtime::Trap::OutOfFuel.into())
        }
    }
}

/// Writes `value` into the single result slot.
fn put(results: &mut [Val], value: Val) -> wasmtime::Result<()> {
    match results.first_mut() {
        Some(slot) => {
            *slot = value;
            Ok(())
        }
        None => wasmtime::bail!("WASI function without a result slot"),
    }
}

/// An owned handle to one of the host's fixed objects.
fn handle(
    store: &mut StoreContextMut<'_, HostState>,
    resource: &str,
    rep: u32,
) -> wasmtime::Result<Val> {
    let any =
        ResourceDynamic::new_own(rep, resource_id(resource)).try_into_resource_any(&mut *store)?;
    Ok(Val::Resource(any))
}

/// `len` bytes of the seeded stream.
fn random_bytes(state: &mut HostState, len: u64) -> Vec<Val> {
    let mut bytes = Vec::new();
    while (bytes.len() as u64) < len {
        for byte in state.next_u64().to_le_bytes() {
            if (bytes.len() as u64) < len {
                bytes.push(Val::U8(byte));
            }
        }
    }
    bytes
}

/// The host's time in milliseconds, as nanoseconds.
fn now_ns(state: &HostState) -> u64 {
    state.now_ms.saturating_mul(1_000_000)
}

fn call(
    behaviour: &Behaviour,
    mut store: StoreContextMut<'_, HostState>,
    params: &[Val],
    results: &mut [Val],
) -> wasmtime::Result<()> {
    charge(&mut store, FUEL_PER_CALL)?;
    match behaviour {
        Behaviour::MonotonicNow => {
            let now = now_ns(store.data());
            put(results, Val::U64(now))
        }
        Behaviour::MonotonicResolution => put(results, Val::U64(1_000_000)),
        Behaviour::WallNow => {
            let ms = store.data().now_ms;
            put(results, datetime(ms / 1000, (ms % 1000) * 1_000_000))
        }
        Behaviour::WallResolution => put(results, datetime(0, 1_000_000)),
        Behaviour::RandomBytes => {
            let len = match params.first() {
                Some(Val::U64(len)) => *len,
                _ => wasmtime::bail!("get-random-bytes: expected a u64 length"),
            };
            if len > MAX_RANDOM_BYTES_PER_REQUEST {
                wasmtime::bail!(
                    "get-random-bytes asked for {len} bytes; the host gives at most \
                     {MAX_RANDOM_BYTES_PER_REQUEST} per request"
                );
            }
            charge(&mut store, len.saturating_mul(FUEL_PER_BYTE))?;
            let bytes = random_bytes(store.data_mut(), len);
            put(results, Val::List(bytes))
        }
        Behaviour::RandomU64 => {
            let value = store.data_mut().next_u64();
            put(results, Val::U64(value))
        }
        Behaviour::InsecureSeed => {
            let state = store.data_mut();
            let seed = Val::Tuple(vec![Val::U64(state.next_u64()), Val::U64(state.next_u64())]);
            put(results, seed)
        }
        Behaviour::Handle(resource, rep) => {
            let value = handle(&mut store, resource, *rep)?;
            put(results, value)
        }
        Behaviour::CheckWrite => {
            let room = MAX_STDIO_BYTES_PER_CALL as u64;
            put(results, Val::Result(Ok(Some(Box::new(Val::U64(room))))))
        }
        Behaviour::Write => {
            let rep = match params.first() {
                Some(Val::Resource(any)) => {
                    ResourceDynamic::try_from_resource_any(*any, &mut store)?.rep()
                }
                _ => wasmtime::bail!("output-stream.write: expected the stream"),
            };
            let bytes: Vec<u8> = match params.get(1) {
                Some(Val::List(items)) => items
                    .iter()
                    .filter_map(|v| match v {
                        Val::U8(b) => Some(*b),
                        _ => None,
                    })
                    .collect(),
                _ => wasmtime::bail!("output-stream.write: expected the bytes"),
            };
            charge(
                &mut store,
                (bytes.len() as u64).saturating_mul(FUEL_PER_BYTE),
            )?;
            let kind = if rep == STDERR { "stderr" } else { "stdout" };
            record_output(store.data_mut(), kind, &bytes);
            put(results, Val::Result(Ok(None)))
        }
        Behaviour::PollAll => {
            let count = match params.first() {
                Some(Val::List(items)) => items.len(),
                _ => 0,
            };
            let ready = (0..count)
                .map(|i| Val::U32(u32::try_from(i).unwrap_or(u32::MAX)))
                .collect();
            put(results, Val::List(ready))
        }
        Behaviour::DebugString => put(results, Val::String("no error detail".to_string())),
        Behaviour::Exit(function) => {
            let status = params.first().map(|v| format!("{v:?}")).unwrap_or_default();
            wasmtime::bail!(
                "the component called {function}({status}): a control plane cannot exit the host"
            )
        }
        Behaviour::Constant(value) => match value {
            Some(value) => put(results, value.clone()),
            None => Ok(()),
        },
        Behaviour::Trap(message) => wasmtime::bail!("unknown import: {message}"),
    }
}

/// A `wasi:clocks/wall-clock.datetime`.
fn datetime(seconds: u64, nanoseconds: u64) -> Val {
    Val::Record(vec![
        ("seconds".to_string(), Val::U64(seconds)),
        (
            "nanoseconds".to_string(),
            Val::U32(u32::try_from(nanoseconds).unwrap_or(u32::MAX)),
        ),
    ])
}

/// Records a write to stdout or stderr as an event-log line, within the
/// per-call budget.
fn record_output(state: &mut HostState, kind: &str, bytes: &[u8]) {
    let used: usize = state
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Log { kind, detail } if kind == "stdout" || kind == "stderr" => {
                Some(detail.len())
            }
            _ => None,
        })
        .sum();
    let room = MAX_STDIO_BYTES_PER_CALL.saturating_sub(used);
    let kept = bytes.len().min(room);
    let (keep, dropped) = bytes.split_at(kept);
    if !keep.is_empty() {
        let text = String::from_utf8_lossy(keep);
        state.effects.push(Effect::Log {
            kind: kind.to_string(),
            detail: serde_json::json!({ "text": text }).to_string(),
        });
    }
    if !dropped.is_empty() {
        STDIO_DROPPED.fetch_add(dropped.len() as u64, Ordering::Relaxed);
        let marked = state
            .effects
            .iter()
            .any(|e| matches!(e, Effect::Log { kind, .. } if kind == "stdio-truncated"));
        if !marked {
            tracing::debug!(
                limit = MAX_STDIO_BYTES_PER_CALL,
                "component output over the per-call limit dropped"
            );
            state.effects.push(Effect::Log {
                kind: "stdio-truncated".to_string(),
                detail: serde_json::json!({ "limit_bytes": MAX_STDIO_BYTES_PER_CALL }).to_string(),
            });
        }
    }
}
