//! `cargo bench -p wasm-scheduler --bench scheduler_perf [-- --quick]`: the scheduler_perf-shaped
//! workloads on the embedded API server. See `wasm_scheduler::bench` and `-- --help`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(wasm_scheduler::bench::main(&[], &args));
}
