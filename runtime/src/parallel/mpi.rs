//! The group of an MPI job (`mpirun -np K percept ...`): MPI's world communicator through
//! rsmpi. The only module that calls MPI.

use super::Group;
use crate::error::{Error, Result};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

pub struct MpiGroup {
    world: SimpleCommunicator,
    // Finalizes MPI when dropped, after the communicator.
    _universe: mpi::environment::Universe,
}

impl MpiGroup {
    /// Initialize MPI (once per process).
    pub fn init() -> Result<MpiGroup> {
        let universe = mpi::initialize().ok_or_else(|| Error::new("MPI was already initialized in this process"))?;
        let world = universe.world();
        Ok(MpiGroup { world, _universe: universe })
    }
}

impl Group for MpiGroup {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn allgather(&self, local: &[f64]) -> Result<Vec<f64>> {
        let mut all = vec![0.0f64; local.len() * self.size()];
        self.world.all_gather_into(local, &mut all[..]);
        Ok(all)
    }

    fn broadcast(&self, root: usize, buf: &mut [u64]) -> Result<()> {
        self.world.process_at_rank(root as i32).broadcast_into(buf);
        Ok(())
    }

    fn barrier(&self) -> Result<()> {
        self.world.barrier();
        Ok(())
    }

    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}
