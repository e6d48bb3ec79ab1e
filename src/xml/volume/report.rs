//! What `vol-dumpxml` prints for a volume ([`VolumeReport`]): the exact shape libvirt 9.0
//! formats for a dir-pool file volume, from facts the pool gathered.
//! Must not: read files or decide anything; every value comes in the report.

use std::fmt::Write as _;

use super::super::escape;
use super::encryption::EncryptionReport;
use super::{Features, write_features};
use crate::model::{Compat, VolFormat};

/// A file's timestamp: seconds and nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timestamp {
    /// Seconds since the epoch.
    pub sec: i64,
    /// Nanoseconds.
    pub nsec: i64,
}

/// What qcow2 reports beyond the common fields (libvirt prints these after a refresh).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qcow2Report {
    /// Compatibility level (version 2 → 0.10, 3 → 1.1).
    pub compat: Compat,
    /// Cluster size in bytes.
    pub cluster_size: u64,
    /// Features (v3 only).
    pub features: Features,
}

/// A file's mode, owner, group and times, as `<permissions>` and `<timestamps>` show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileAttributes {
    /// Permission bits.
    pub mode: u32,
    /// Owner uid.
    pub owner: u32,
    /// Group gid.
    pub group: u32,
    /// atime, mtime, ctime.
    pub times: [Timestamp; 3],
}

/// The backing store of an overlay, for `vol-dumpxml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackingReport {
    /// Absolute path.
    pub path: String,
    /// Format from the image's backing-format extension.
    pub format: Option<VolFormat>,
    /// The backing file's attributes, when it can be read.
    pub attributes: Option<FileAttributes>,
}

/// Writes `<permissions>` and `<timestamps>` at the given indent, as libvirt formats them
/// (btime unknown: 0).
fn write_attributes(out: &mut String, indent: &str, a: &FileAttributes) {
    let _ = writeln!(out, "{indent}<permissions>");
    let _ = writeln!(out, "{indent}  <mode>0{:o}</mode>", a.mode);
    let _ = writeln!(out, "{indent}  <owner>{}</owner>", a.owner);
    let _ = writeln!(out, "{indent}  <group>{}</group>", a.group);
    let _ = writeln!(out, "{indent}</permissions>");
    let _ = writeln!(out, "{indent}<timestamps>");
    let inner = format!("{indent}  ");
    write_timestamp(out, &inner, "atime", a.times[0]);
    write_timestamp(out, &inner, "mtime", a.times[1]);
    write_timestamp(out, &inner, "ctime", a.times[2]);
    write_timestamp(out, &inner, "btime", Timestamp::default());
    let _ = writeln!(out, "{indent}</timestamps>");
}

/// A volume as it exists, for `vol-dumpxml` (libvirt's formatted `virStorageVolDef`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeReport {
    /// Volume name.
    pub name: String,
    /// Absolute path; also the key.
    pub path: String,
    /// Guest-visible size.
    pub capacity: u64,
    /// `st_blocks * 512`.
    pub allocation: u64,
    /// `st_size`.
    pub physical: u64,
    /// Detected format.
    pub format: VolFormat,
    /// File mode bits (permission bits only).
    pub mode: u32,
    /// Owner uid.
    pub owner: u32,
    /// Group gid.
    pub group: u32,
    /// atime, mtime, ctime.
    pub times: [Timestamp; 3],
    /// qcow2 details, when the volume is qcow2.
    pub qcow2: Option<Qcow2Report>,
    /// Backing store of an overlay.
    pub backing: Option<BackingReport>,
    /// The volume's encryption, when it is a LUKS volume.
    pub encryption: Option<EncryptionReport>,
}

fn write_timestamp(out: &mut String, indent: &str, name: &str, ts: Timestamp) {
    let _ = write!(out, "{indent}<{name}>{}", ts.sec);
    if ts.nsec != 0 {
        let _ = write!(out, ".{:09}", ts.nsec);
    }
    let _ = writeln!(out, "</{name}>");
}

impl VolumeReport {
    /// Formats the volume the way libvirt 9.0's `virStorageVolDefFormat` does for a dir pool.
    pub fn to_xml(&self) -> String {
        let mut out = String::new();
        let path = escape(&self.path);
        let _ = writeln!(out, "<volume type='file'>");
        let _ = writeln!(out, "  <name>{}</name>", escape(&self.name));
        let _ = writeln!(out, "  <key>{path}</key>");
        let _ = writeln!(out, "  <capacity unit='bytes'>{}</capacity>", self.capacity);
        let _ = writeln!(
            out,
            "  <allocation unit='bytes'>{}</allocation>",
            self.allocation
        );
        if self.physical != 0 {
            let _ = writeln!(out, "  <physical unit='bytes'>{}</physical>", self.physical);
        }
        let _ = writeln!(out, "  <target>");
        let _ = writeln!(out, "    <path>{path}</path>");
        let _ = writeln!(out, "    <format type='{}'/>", self.format.as_str());
        write_attributes(
            &mut out,
            "    ",
            &FileAttributes {
                mode: self.mode,
                owner: self.owner,
                group: self.group,
                times: self.times,
            },
        );
        if let Some(e) = &self.encryption {
            e.write(&mut out, "    ");
        }
        if let Some(q) = &self.qcow2 {
            // libvirt leaves <compat> out for a version 2 image (its create default is 0.10);
            // qpool's default is 1.1, so 0.10 is printed too, or feeding this document back
            // to vol-create (what vol-clone does) would turn a v2 image into a v3 one.
            let _ = writeln!(out, "    <compat>{}</compat>", q.compat.as_str());
            let _ = writeln!(
                out,
                "    <clusterSize unit='B'>{}</clusterSize>",
                q.cluster_size
            );
            if q.compat == Compat::V1_1 {
                write_features(&mut out, &q.features);
            }
        }
        let _ = writeln!(out, "  </target>");
        if let Some(b) = &self.backing {
            let _ = writeln!(out, "  <backingStore>");
            let _ = writeln!(out, "    <path>{}</path>", escape(&b.path));
            if let Some(f) = b.format {
                let _ = writeln!(out, "    <format type='{}'/>", f.as_str());
            }
            if let Some(a) = &b.attributes {
                write_attributes(&mut out, "    ", a);
            }
            let _ = writeln!(out, "  </backingStore>");
        }
        let _ = writeln!(out, "</volume>");
        out
    }
}
