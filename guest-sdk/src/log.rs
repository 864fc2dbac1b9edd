//! Logging from a plugin. In a component the line goes to the host's `tracing`, tagged with the
//! plugin's name; natively it goes to the logger the host installed, if any.

use crate::types::LogLevel;

/// Writes a log line through the host. Keep lines short and few: the host cuts them at 1 KiB
/// and rate-limits each plugin (a burst of 200 lines, then 20 a second; the rest is dropped).
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::__bindings::kube_scheduler::plugin::{host, types::LogLevel as L};
        let level = match level {
            LogLevel::Trace => L::Trace,
            LogLevel::Debug => L::Debug,
            LogLevel::Info => L::Info,
            LogLevel::Warn => L::Warn,
            LogLevel::Error => L::Error,
        };
        host::log(level, message);
    }
    #[cfg(not(target_arch = "wasm32"))]
    if let Some(logger) = NATIVE_LOGGER.get() {
        logger(level, message);
    }
}

#[cfg(not(target_arch = "wasm32"))]
static NATIVE_LOGGER: std::sync::OnceLock<fn(LogLevel, &str)> = std::sync::OnceLock::new();

/// Installs the function that receives log lines of plugins compiled into the host.
/// The first call wins. Used by the host; plugins never call it.
pub fn set_native_logger(logger: fn(LogLevel, &str)) {
    #[cfg(not(target_arch = "wasm32"))]
    let _ = NATIVE_LOGGER.set(logger);
    #[cfg(target_arch = "wasm32")]
    let _ = logger;
}
