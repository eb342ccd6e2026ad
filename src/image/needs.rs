//! The files an image needs on disk: every regular file the program had open or mapped that
//! CRIU reopens by path at restore (`files.img`, FileEntry type REG), less those the image
//! holds itself (a ghost or link remap in `remap-fpath.img`). A restore on a host where one is
//! missing fails inside CRIU (`Can't open file ... on restore`): crac-java names it first, and
//! `-XX:CRaCInspectImage` lists what is missing.

use std::path::Path;

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    super::varint(buf, pos).ok()
}

/// A field's value: a varint, or the bytes of a length-delimited field.
type Value<'a> = Result<u64, &'a [u8]>;

/// The fields of one protobuf message: (field number, value).
fn fields(buf: &[u8]) -> Option<Vec<(u64, Value<'_>)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let tag = varint(buf, &mut pos)?;
        let (field, wire) = (tag >> 3, tag & 7);
        match wire {
            0 => out.push((field, Ok(varint(buf, &mut pos)?))),
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
                out.push((field, Err(buf.get(pos..pos.checked_add(len)?)?)));
                pos += len;
            }
            5 => pos += 4,
            1 => pos += 8,
            _ => return None,
        }
    }
    Some(out)
}

/// The entries of a CRIU image file (magics, then a 32-bit length and a message each).
fn entries(bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let u32_at = |i: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?))
    };
    // IMG_COMMON_MAGIC, then the file's own magic.
    let mut pos = if u32_at(0) == Some(0x5456_4319) { 8 } else { 4 };
    let mut out = Vec::new();
    while pos < bytes.len() {
        let len = u32_at(pos)? as usize;
        pos += 4;
        out.push(bytes.get(pos..pos + len)?);
        pos += len;
    }
    Some(out)
}

const FD_TYPE_REG: u64 = 1;

/// The paths (absolute) of the files the image in `fs` needs on disk; an error names a damaged
/// image file.
pub fn files(fs: &Path) -> Result<Vec<String>, String> {
    let read = |name: &str| -> Result<Option<Vec<u8>>, String> {
        match super::manifest::open_regular(&fs.join(name)) {
            Ok(mut f) => {
                let mut b = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut b).map_err(|e| format!("{name}: {e}"))?;
                Ok(Some(b))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{name}: {e}")),
        }
    };
    let mut remapped = Vec::new();
    if let Some(bytes) = read("remap-fpath.img")? {
        for e in entries(&bytes).ok_or("remap-fpath.img is damaged")? {
            for (field, v) in fields(e).ok_or("remap-fpath.img is damaged")? {
                if let (1, Ok(id)) = (field, v) {
                    remapped.push(id);
                }
            }
        }
    }
    let Some(bytes) = read("files.img")? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in entries(&bytes).ok_or("files.img is damaged")? {
        let f = fields(e).ok_or("files.img is damaged")?;
        let is_reg = f.iter().any(|(n, v)| *n == 1 && *v == Ok(FD_TYPE_REG));
        let Some(reg) = f
            .iter()
            .find_map(|(n, v)| (*n == 3).then_some(v).and_then(|v| v.err()))
        else {
            continue;
        };
        if !is_reg {
            continue;
        }
        let r = fields(reg).ok_or("files.img is damaged")?;
        let id = r
            .iter()
            .find_map(|(n, v)| (*n == 1).then_some(*v).and_then(|v| v.ok()));
        let external = r.iter().any(|(n, v)| *n == 9 && *v == Ok(1));
        let name = r
            .iter()
            .find_map(|(n, v)| (*n == 6).then_some(*v).and_then(|v| v.err()))
            .map(|n| String::from_utf8_lossy(n).into_owned());
        if let (Some(id), Some(name)) = (id, name) {
            if !external && !remapped.contains(&id) {
                out.push(format!("/{}", name.trim_start_matches('/')));
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Of `needed`, those not on disk here (`exempt`: made by the restore itself, as logs are).
pub fn missing(needed: &[String], exempt: &[String]) -> Vec<String> {
    needed
        .iter()
        .filter(|p| !exempt.contains(p))
        .filter(|p| std::fs::symlink_metadata(p).is_err())
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::image::tests::put_varint as v;

    fn bytes_field(field: u64, body: &[u8], out: &mut Vec<u8>) {
        v(field << 3 | 2, out);
        v(body.len() as u64, out);
        out.extend_from_slice(body);
    }

    fn image(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut out = 0x5456_4319u32.to_le_bytes().to_vec();
        out.extend_from_slice(&0x1234_5678u32.to_le_bytes());
        for e in entries {
            out.extend_from_slice(&(e.len() as u32).to_le_bytes());
            out.extend_from_slice(e);
        }
        out
    }

    fn reg(id: u64, name: &str) -> Vec<u8> {
        let mut r = Vec::new();
        v(1 << 3, &mut r);
        v(id, &mut r);
        bytes_field(6, name.as_bytes(), &mut r);
        let mut f = Vec::new();
        v(1 << 3, &mut f);
        v(FD_TYPE_REG, &mut f);
        v(2 << 3, &mut f);
        v(id, &mut f);
        bytes_field(3, &r, &mut f);
        f
    }

    #[test]
    fn regular_files_are_listed_less_those_the_image_holds() {
        let dir = std::env::temp_dir().join(format!("crac-shim-needs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("files.img"),
            image(&[
                reg(3, "usr/lib/a.so"),
                reg(4, "tmp/ghost.so"),
                reg(5, "srv/b.jar"),
            ]),
        )
        .unwrap();
        let mut remap = Vec::new();
        v(1 << 3, &mut remap);
        v(4, &mut remap);
        v(2 << 3, &mut remap);
        v(9, &mut remap);
        std::fs::write(dir.join("remap-fpath.img"), image(&[remap])).unwrap();
        assert_eq!(
            files(&dir).unwrap(),
            vec!["/srv/b.jar".to_string(), "/usr/lib/a.so".to_string()]
        );
        std::fs::write(dir.join("files.img"), b"\x19\x43\x56\x54xxxx\xff\xff").unwrap();
        assert!(files(&dir).is_err(), "damage is an error, not a panic");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
