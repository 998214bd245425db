//! A tmpfs of a few KiB, for tests of a full disk.

use super::temp_dir;

/// A tmpfs of a few KiB mounted for one test, unmounted on drop.
pub struct SmallDisk {
    /// Its mount point.
    pub dir: tempfile::TempDir,
}

impl SmallDisk {
    pub fn new() -> SmallDisk {
        let dir = temp_dir();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(st.success(), "mounting a tmpfs needs root");
        SmallDisk { dir }
    }

    /// Fills the disk to the last byte.
    pub fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.dir.path().join("filler")).unwrap();
        let block = [0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.write_all(&[0u8; 1]);
        let _ = f.sync_all();
    }

    pub fn free(&self) {
        std::fs::remove_file(self.dir.path().join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
