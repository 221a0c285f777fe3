//! Copying buffers back to the host: a staging buffer from the pool, `map_async`, and a wait on a
//! futures-intrusive channel.

use crate::context::Context;
use crate::pool::GpuBuffer;
use kiln_core::{KilnError, Result};

/// Maps each `(staging, bytes)` after the submission that filled them and copies the bytes out.
pub fn map_and_copy(ctx: &Context, staging: &[(GpuBuffer, u64)]) -> Result<Vec<Vec<u8>>> {
    let mut receivers = vec![];
    for (buf, bytes) in staging {
        let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
        buf.buffer
            .slice(..(*bytes).max(4).div_ceil(4) * 4)
            .map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
        receivers.push(rx);
    }
    ctx.wait()?;
    let mut out = vec![];
    for ((buf, bytes), rx) in staging.iter().zip(receivers) {
        match pollster::block_on(rx.receive()) {
            Some(Ok(())) => {}
            other => {
                ctx.check_lost()?;
                return Err(KilnError::DeviceLost(format!(
                    "reading back a buffer failed: {other:?}"
                )));
            }
        }
        let data = {
            let view = buf
                .buffer
                .slice(..(*bytes).max(4).div_ceil(4) * 4)
                .get_mapped_range()
                .map_err(|e| KilnError::Backend(format!("mapping a staging buffer: {e:?}")))?;
            view[..*bytes as usize].to_vec()
        };
        buf.buffer.unmap();
        out.push(data);
    }
    Ok(out)
}
