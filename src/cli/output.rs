//! What the `qpool` command prints on success: virsh-compatible text (tables, `vol-info` /
//! `pool-info` blocks, `explain`) and, with `--output json`, one JSON document ([`json`]).
//!
//! Owns: every line the `qpool` command prints on success, formatted as virsh 9.0 formats
//! it (labels padded to 15 columns, `%.2f` binary sizes, vsh-table column layout), and the
//! field names of the JSON output (stable: README, "JSON output").
//! Must not: look anything up; it formats values it is given.

use std::fmt::Write as _;

use crate::pool::{Plan, PoolInfo, VolumeInfo};
use crate::units::format_pretty;

/// A virsh table (`vshTable`): a header row, a dashed line, then the rows, each cell
/// preceded by one space and padded to the column's widest cell plus two spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    table_row(&mut out, header.iter().copied(), &widths);
    let dashes: usize = widths.iter().map(|w| w + 3).sum();
    out.push_str(&"-".repeat(dashes));
    out.push('\n');
    for row in rows {
        table_row(&mut out, row.iter().map(String::as_str), &widths);
    }
    out
}

fn table_row<'a>(out: &mut String, cells: impl Iterator<Item = &'a str>, widths: &[usize]) {
    for (i, cell) in cells.enumerate() {
        out.push(' ');
        out.push_str(cell);
        if i + 1 < widths.len() {
            let pad = widths[i] - cell.chars().count() + 2;
            out.extend(std::iter::repeat_n(' ', pad));
        }
    }
    out.push('\n');
}

/// `vol-list [--details]`.
pub fn vol_list(volumes: &[VolumeInfo], details: bool) -> String {
    let rows: Vec<Vec<String>> = volumes
        .iter()
        .map(|v| {
            let mut row = vec![v.name.clone(), v.path.display().to_string()];
            if details {
                row.push("file".into());
                row.push(format_pretty(v.capacity));
                row.push(format_pretty(v.allocation));
            }
            row
        })
        .collect();
    if details {
        table(&["Name", "Path", "Type", "Capacity", "Allocation"], &rows)
    } else {
        table(&["Name", "Path"], &rows)
    }
}

fn label(out: &mut String, label: &str, value: &str) {
    let _ = writeln!(out, "{label:<15} {value}");
}

fn size(bytes: u64, exact: bool) -> String {
    if exact {
        format!("{bytes} bytes")
    } else {
        format_pretty(bytes)
    }
}

/// `vol-info [--bytes] [--physical]`.
pub fn vol_info(v: &VolumeInfo, bytes: bool, physical: bool) -> String {
    let mut out = String::new();
    label(&mut out, "Name:", &v.name);
    label(&mut out, "Type:", "file");
    label(&mut out, "Capacity:", &size(v.capacity, bytes));
    if physical {
        label(&mut out, "Physical:", &size(v.physical, bytes));
    } else {
        label(&mut out, "Allocation:", &size(v.allocation, bytes));
    }
    out
}

/// `pool-info [--bytes]`.
pub fn pool_info(p: &PoolInfo, bytes: bool) -> String {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let mut out = String::new();
    label(&mut out, "Name:", &p.name);
    label(&mut out, "UUID:", &p.uuid.hyphenated().to_string());
    label(&mut out, "State:", "running");
    label(&mut out, "Persistent:", yes_no(p.persistent));
    label(&mut out, "Autostart:", yes_no(p.autostart));
    label(&mut out, "Capacity:", &size(p.capacity, bytes));
    label(&mut out, "Allocation:", &size(p.allocation, bytes));
    label(&mut out, "Available:", &size(p.available, bytes));
    out
}

/// `explain`: the decision, the rule, and the expected sizes.
pub fn explain(plan: &Plan) -> String {
    let mut out = String::new();
    label(&mut out, "Volume:", &plan.name);
    let format = match plan.image.qcow2_options() {
        Some(opts) => format!(
            "qcow2 (compat {}, cluster size {}, refcount bits {}{}{}{})",
            opts.version,
            opts.cluster_size,
            opts.refcount_bits,
            if opts.lazy_refcounts {
                ", lazy_refcounts"
            } else {
                ""
            },
            if opts.extended_l2 {
                ", extended_l2"
            } else {
                ""
            },
            if opts.compression_zstd {
                ", compression zstd"
            } else {
                ""
            },
        ),
        None => "raw".to_string(),
    };
    label(&mut out, "Format:", &format);
    label(
        &mut out,
        "Capacity:",
        &format!(
            "{} bytes ({})",
            plan.capacity(),
            format_pretty(plan.capacity())
        ),
    );
    if let Some(b) = &plan.backing {
        label(
            &mut out,
            "Backing store:",
            &format!("{} ({}, {} bytes)", b.path, b.format.as_str(), b.capacity),
        );
    }
    label(&mut out, "Preallocation:", plan.decision.mode.as_str());
    label(&mut out, "Rule:", &plan.decision.to_string());
    if plan.decision.reserve > 0 {
        label(
            &mut out,
            "Reserved:",
            &format!("first {} bytes of guest data", plan.decision.reserve),
        );
    }
    if plan.zero_fill_fallback {
        label(
            &mut out,
            "Fallback:",
            "fallocate is not supported on this filesystem: zeros are written instead (falloc falls back to full)",
        );
    }
    label(
        &mut out,
        "Allocation:",
        &format!(
            "{} bytes expected ({})",
            plan.expected_allocation(),
            format_pretty(plan.expected_allocation())
        ),
    );
    label(
        &mut out,
        "Physical:",
        &format!(
            "{} bytes expected ({})",
            plan.expected_physical(),
            format_pretty(plan.expected_physical())
        ),
    );
    out
}

/// `--output json`: one JSON document per command, sizes in bytes, field names stable.
pub mod json {
    use serde_json::{Value, json};

    use crate::pool::{Created, Plan, PoolInfo, VolumeInfo};

    fn document(value: &Value) -> String {
        let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into());
        text.push('\n');
        text
    }

    fn volume_value(v: &VolumeInfo) -> Value {
        let qcow2 = v.image.qcow2.as_ref().map(|q| {
            json!({
                "compat": q.header.version.as_str(),
                "cluster_size": q.header.cluster_size(),
                "lazy_refcounts": q.lazy_refcounts(),
                "extended_l2": q.extended_l2(),
                "compression": q.compression().as_str(),
                "backing_file": q.backing_file,
                "backing_format": q.backing_format,
            })
        });
        json!({
            "name": v.name,
            "key": v.path.display().to_string(),
            "path": v.path.display().to_string(),
            "type": "file",
            "format": v.image.format.as_str(),
            "capacity": v.capacity,
            "allocation": v.allocation,
            "physical": v.physical,
            "mode": format!("{:04o}", v.mode),
            "owner": v.uid,
            "group": v.gid,
            "qcow2": qcow2,
        })
    }

    fn plan_value(p: &Plan) -> Value {
        let qcow2 = p.image.qcow2_options().map(|o| {
            json!({
                "compat": o.version.as_str(),
                "cluster_size": o.cluster_size,
                "refcount_bits": o.refcount_bits,
                "lazy_refcounts": o.lazy_refcounts,
                "extended_l2": o.extended_l2,
                "compression": if o.compression_zstd { "zstd" } else { "zlib" },
            })
        });
        let backing = p.backing.as_ref().map(
            |b| json!({ "path": b.path, "format": b.format.as_str(), "capacity": b.capacity }),
        );
        json!({
            "name": p.name,
            "format": p.format().as_str(),
            "capacity": p.capacity(),
            "preallocation": p.preallocation().as_str(),
            "rule": p.decision.rule.id(),
            "rule_text": p.decision.to_string(),
            "reserved": p.decision.reserve,
            "zero_fill_fallback": p.zero_fill_fallback,
            "expected_allocation": p.expected_allocation(),
            "expected_physical": p.expected_physical(),
            "qcow2": qcow2,
            "backing": backing,
        })
    }

    /// `vol-info`: the volume.
    pub fn volume(v: &VolumeInfo) -> String {
        document(&volume_value(v))
    }

    /// `vol-list`: the pool's name and its volumes.
    pub fn vol_list(pool: &str, volumes: &[VolumeInfo]) -> String {
        let list: Vec<Value> = volumes.iter().map(volume_value).collect();
        document(&json!({ "pool": pool, "volumes": list }))
    }

    /// `pool-info`.
    pub fn pool_info(p: &PoolInfo) -> String {
        document(&json!({
            "name": p.name,
            "uuid": p.uuid.hyphenated().to_string(),
            "state": "running",
            "persistent": p.persistent,
            "autostart": p.autostart,
            "capacity": p.capacity,
            "allocation": p.allocation,
            "available": p.available,
        }))
    }

    /// `explain`: the plan.
    pub fn plan(p: &Plan) -> String {
        document(&plan_value(p))
    }

    /// The `vol-create` verbs: the volume made, and the plan it was made from.
    pub fn created(c: &Created) -> String {
        document(&json!({
            "volume": volume_value(&c.volume),
            "plan": plan_value(&c.plan),
            "fell_back_to_zeroes": c.report.fell_back_to_zeroes,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_virsh_layout() {
        // virsh vol-list --details, from libvirt-rpc.md §6.1.
        let rows = vec![
            vec![
                "full.qcow2".into(),
                "/srv/lvpool/full.qcow2".into(),
                "file".into(),
                "5.00 GiB".into(),
                "196.00 KiB".into(),
            ],
            vec![
                "pm-full.qcow2".into(),
                "/srv/lvpool/pm-full.qcow2".into(),
                "file".into(),
                "5.00 GiB".into(),
                "5.00 GiB".into(),
            ],
        ];
        let expected = concat!(
            " Name            Path                        Type   Capacity   Allocation\n",
            "---------------------------------------------------------------------------\n",
            " full.qcow2      /srv/lvpool/full.qcow2      file   5.00 GiB   196.00 KiB\n",
            " pm-full.qcow2   /srv/lvpool/pm-full.qcow2   file   5.00 GiB   5.00 GiB\n",
        );
        assert_eq!(
            table(&["Name", "Path", "Type", "Capacity", "Allocation"], &rows),
            expected
        );
    }

    #[test]
    fn empty_table_has_header_and_dashes() {
        assert_eq!(
            table(&["Name", "Path"], &[]),
            " Name   Path\n--------------\n"
        );
    }
}
