//! The `percept` command line. Results go to stdout (`--json` for machines), progress and
//! logs to stderr. Exit codes: 0 success, 1 a user error (bad model, data or weights), 2 a
//! usage error.

fn main() {
    std::process::exit(percept::cli::main());
}
