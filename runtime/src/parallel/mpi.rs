//! The group of an MPI job (`mpirun -np K percept ...`): MPI's world communicator through
//! rsmpi. The only module that calls MPI.

use super::Group;
use crate::error::{Error, Result};
use mpi::datatype::Equivalence;
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

    fn gather<T: Equivalence + Copy + Default>(&self, local: &[T]) -> Vec<T> {
        let mut all = vec![T::default(); local.len() * self.size()];
        self.world.all_gather_into(local, &mut all[..]);
        all
    }

    fn exchange<T: Equivalence + Copy + Default>(&self, send: &[T]) -> Result<Vec<T>> {
        if !send.len().is_multiple_of(self.size()) {
            return Err(Error::new("an alltoall buffer must hold one equal block per process"));
        }
        let mut received = vec![T::default(); send.len()];
        self.world.all_to_all_into(send, &mut received[..]);
        Ok(received)
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
        Ok(self.gather(local))
    }

    fn alltoall(&self, send: &[f64]) -> Result<Vec<f64>> {
        self.exchange(send)
    }

    fn allgather_f32(&self, local: &[f32]) -> Result<Vec<f32>> {
        Ok(self.gather(local))
    }

    fn alltoall_f32(&self, send: &[f32]) -> Result<Vec<f32>> {
        self.exchange(send)
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
