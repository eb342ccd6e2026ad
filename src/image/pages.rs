//! Whether a restore maps the image's pages or reads them.
//!
//! crac-shim's CRIU (`crac-shim-feature: map-pages`, `shims/criu/0004-*.patch`) can map the
//! pages image copy-on-write over the restored process's anonymous memory instead of reading
//! it: the restore no longer copies the image, and copies of one image share what they do not
//! write. It is on by default where that CRIU runs; everything else reads as upstream does.
//!
//! Two things change for the restored process, both handled here or in the patch:
//! - its memory refers to the pages file, so that CRIU dumps such regions back as plain memory
//!   (a checkpoint of a copy is a whole image; the old one may go); a CRIU without the patch
//!   would record them as file mappings, so the dump refuses it (`refuse_dump`);
//! - a page dropped with `MADV_DONTNEED` comes back with the image's bytes rather than zeros.
//!   glibc never counts on those zeros (calloc clears below each arena's high-water mark), but
//!   jemalloc, tcmalloc and mimalloc may hand such memory out as zeroed: with one of them in
//!   the JVM, recorded at the checkpoint (`allocator_of`), pages are read.

use crate::criu::Criu;

/// What CRIU is told to map the pages (crac-shim's CRIU only).
pub const CRIU_ENV: &str = "CRAC_SHIM_MAP_PAGES";
/// The CRIU feature line that says it can.
pub const FEATURE: &str = "map-pages";

/// Allocators that take memory given back with MADV_DONTNEED to be zero when they reuse it.
const ZERO_TRUSTING_ALLOCATORS: [&str; 4] =
    ["libjemalloc", "libtcmalloc", "libmimalloc", "libsnmalloc"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageMode {
    Mapped,
    /// Read into fresh memory, and why.
    Read(String),
}

impl PageMode {
    pub fn describe(&self) -> String {
        match self {
            PageMode::Mapped => "pages mapped from the image (copy-on-write)".to_string(),
            PageMode::Read(why) => format!("pages read into memory ({why})"),
        }
    }
}

/// How a restore with `criu` treats the pages. `map_pages` is `-XX:CRaCEngineOptions`'s
/// choice, if any; `criu_args` what CRIU gets besides; `allocator` what the image recorded.
pub fn choose(
    criu: &Criu,
    map_pages: Option<bool>,
    lazy_pages: bool,
    criu_args: &[String],
    allocator: &str,
) -> PageMode {
    let read = |why: &str| PageMode::Read(why.to_string());
    if map_pages == Some(false) {
        read("map_pages=false")
    } else if lazy_pages {
        read("lazy_pages: pages arrive on first touch instead")
    } else if criu_args.iter().any(|a| a == "--auto-dedup") {
        read("--auto-dedup punches the pages out of the image as they are read")
    } else if !criu.has_feature(FEATURE) {
        read("this CRIU cannot map them: crac-shim's scripts/setup builds one that can")
    } else if !allocator.is_empty() {
        PageMode::Read(format!(
            "the JVM ran with {allocator}, which takes memory it gave back to be zero"
        ))
    } else {
        PageMode::Mapped
    }
}

/// The allocator in a process's `/proc/PID/maps` that must not get mapped pages, if any.
pub fn allocator_of(maps: &str) -> Option<String> {
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter_map(|p| p.rsplit('/').next())
        .find(|name| {
            ZERO_TRUSTING_ALLOCATORS
                .iter()
                .any(|a| name.starts_with(&format!("{a}.so")) || name.starts_with(&format!("{a}_")))
        })
        .map(str::to_string)
}

/// Whether the maps hold a page image mapped by a restore (`.../pages-N.img`).
pub fn maps_page_images(maps: &str) -> bool {
    maps.lines().any(|l| {
        let mut fields = l.split_whitespace();
        let private = fields.nth(1).is_some_and(|perms| perms.ends_with('p'));
        let path = fields.nth(3).unwrap_or("");
        private && is_page_image(path)
    })
}

fn is_page_image(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or("");
    name.strip_prefix("pages-")
        .and_then(|n| n.strip_suffix(".img"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Why a JVM whose maps are `maps` cannot be dumped by `criu`, if it cannot.
pub fn refuse_dump(criu: &Criu, maps: &str) -> Option<String> {
    (maps_page_images(maps) && !criu.has_feature(FEATURE)).then(|| {
        format!(
            "this JVM was restored with its pages mapped from the image, and {} would record them as a file rather than memory: checkpoint it with crac-shim's CRIU (the one that restored it), or restore with -XX:CRaCEngineOptions=map_pages=false",
            criu.path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn criu(features: &[&str]) -> Criu {
        Criu {
            path: PathBuf::from("/x/criu"),
            version: "4.2.1".into(),
            features: features.iter().map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    fn mapped_only_where_everything_allows_it() {
        let ours = criu(&[FEATURE]);
        assert_eq!(choose(&ours, None, false, &[], ""), PageMode::Mapped);
        assert_eq!(choose(&ours, Some(true), false, &[], ""), PageMode::Mapped);
        for mode in [
            choose(&ours, Some(false), false, &[], ""),
            choose(&ours, None, true, &[], ""),
            choose(&ours, None, false, &["--auto-dedup".into()], ""),
            choose(&criu(&[]), Some(true), false, &[], ""),
            choose(&ours, None, false, &[], "libjemalloc.so.2"),
        ] {
            assert!(matches!(mode, PageMode::Read(_)), "{mode:?}");
        }
    }

    #[test]
    fn allocators_and_page_images_in_maps() {
        let maps = "\
7f00-7f10 r-xp 00000000 fe:00 12 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2
c000-c100 rw-p 00000000 fe:00 13 /srv/img/pages-2.img
";
        assert_eq!(allocator_of(maps).as_deref(), Some("libjemalloc.so.2"));
        assert_eq!(
            allocator_of("7f00-7f10 r-xp 0 fe:00 1 /lib/libc.so.6\n"),
            None
        );
        assert!(maps_page_images(maps));
        assert!(maps_page_images(
            "c000-c100 rw-p 0 fe:00 13 /img/pages-1.img (deleted)\n"
        ));
        assert!(!maps_page_images(
            "c000-c100 rw-s 0 fe:00 13 /img/pages-1.img\n"
        ));
        assert!(!maps_page_images(
            "c000-c100 rw-p 0 fe:00 13 /img/pages-x.img\n"
        ));
        assert!(refuse_dump(&criu(&[]), maps).is_some());
        assert!(refuse_dump(&criu(&[FEATURE]), maps).is_none());
    }
}
