//! Types, names and pure logic shared by the kernel programs (probe-ebpf) and
//! the loader (probe-user). `no_std`, so the same bytes mean the same thing on
//! both sides.
#![cfg_attr(not(feature = "user"), no_std)]

pub mod classify;
pub mod drops;
pub mod latency;
pub mod maps;
pub mod stage_latency;

pub use classify::{Classification, Frame, InnerClass, NicClass};
pub use maps::*;

#[cfg(feature = "user")]
pub mod frames;

#[cfg(feature = "user")]
impl Frame for [u8] {
    fn head<const N: usize>(&self) -> Option<&[u8; N]> {
        self.first_chunk()
    }
    fn u8_at(&self, offset: usize) -> Option<u8> {
        self.get(offset).copied()
    }
    fn be16_at(&self, offset: usize) -> Option<u16> {
        let b = self.get(offset..offset.checked_add(2)?)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
    fn be32_at(&self, offset: usize) -> Option<u32> {
        let b = self.get(offset..offset.checked_add(4)?)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}
