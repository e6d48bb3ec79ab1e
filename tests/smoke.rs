//! Smoke test: the CLI creates a qcow2 volume that qemu-img accepts.

mod common;

use common::{TempPool, assert_check_clean, have};

#[test]
fn vol_create_as_qcow2_passes_qemu_img_check() {
    if !have("qemu-img") {
        return;
    }
    let pool = TempPool::new();
    let out = pool.ok(&["vol-create-as", "d.qcow2", "1G", "--format", "qcow2"]);
    assert_eq!(out, "Vol d.qcow2 created\n\n");
    assert_check_clean(&pool.vol("d.qcow2"));
}
