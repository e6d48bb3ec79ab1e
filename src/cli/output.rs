//! virsh-compatible text: tables, `vol-info` / `pool-info` blocks and `explain`.
//!
//! Owns: every line the `qpool` command prints on success, formatted as virsh 9.0 formats
//! it (labels padded to 15 columns, `%.2f` binary sizes, vsh-table column layout).
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
