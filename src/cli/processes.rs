//! The processes a `percept` command runs with: under `mpirun` (with the `mpi` feature)
//! MPI's world, else this process alone.

use super::UserError;
use percept_runtime::parallel::{Group, Solo};
use std::rc::Rc;

/// How many processes the launcher started, if one did (OpenMPI, MPICH/Hydra, PMIx).
fn launched_size() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"]
        .iter()
        .find_map(|v| std::env::var(v).ok().and_then(|s| s.trim().parse().ok()))
}

/// Whether this is process 0 of a launcher's job (or runs alone): what prints.
pub fn is_first() -> bool {
    ["OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"]
        .iter()
        .find_map(|v| std::env::var(v).ok().and_then(|s| s.trim().parse::<usize>().ok()))
        .is_none_or(|r| r == 0)
}

/// The group of this run's processes.
pub fn process_group() -> Result<Rc<dyn Group>, UserError> {
    let launched = launched_size();
    #[cfg(feature = "mpi")]
    if launched.is_some() {
        return Ok(Rc::new(percept_runtime::parallel::MpiGroup::init()?));
    }
    if launched.is_some_and(|k| k > 1) {
        return Err(UserError(
            "this percept was built without MPI support, so under mpirun each process would train alone; \
             build it with `cargo build --release --features mpi` (README: Training on several processes)"
                .into(),
        ));
    }
    Ok(Rc::new(Solo))
}
