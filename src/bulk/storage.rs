//! Where export files go. A small trait rather than `object_store`: the local backend is all
//! Sphere runs today, and downloads are served straight from the folder (streamed, with range
//! requests) by warp's file filter. An S3-compatible backend implements the same trait.
//!
//! Files are written under a temporary name and renamed into place only when complete, so a
//! listing (and a manifest) never shows a half-written file.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// A file being written; invisible to readers until [`PartFile::commit`].
pub trait PartFile: Write + Send {
    /// Flushes, makes the content durable, and publishes the file under its final name.
    fn commit(self: Box<Self>) -> io::Result<()>;
}

/// The storage of export files, one folder per job.
pub trait ExportStorage: Send + Sync + 'static {
    fn create(&self, job_id: &str, name: &str) -> io::Result<Box<dyn PartFile>>;
    /// Deletes every file of a job (cancellation, expiry).
    fn remove_job(&self, job_id: &str) -> io::Result<()>;
    /// An anonymous scratch file for a job's own use (never listed, gone when dropped).
    fn scratch(&self, job_id: &str) -> io::Result<File>;
}

/// Export files in a local folder: `{root}/{job_id}/{name}`.
#[derive(Debug, Clone)]
pub struct LocalFolder {
    root: PathBuf,
}

impl LocalFolder {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

struct LocalPart {
    writer: BufWriter<File>,
    temp: PathBuf,
    target: PathBuf,
}

impl Write for LocalPart {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writer.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

impl PartFile for LocalPart {
    fn commit(self: Box<Self>) -> io::Result<()> {
        let LocalPart {
            writer,
            temp,
            target,
        } = *self;
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&temp, &target)
    }
}

impl ExportStorage for LocalFolder {
    fn create(&self, job_id: &str, name: &str) -> io::Result<Box<dyn PartFile>> {
        let dir = self.root.join(job_id);
        fs::create_dir_all(&dir)?;
        // A dot name: never listed in a manifest, and refused by the download route.
        let temp = dir.join(format!(".{name}.part"));
        let file = File::create(&temp)?;
        Ok(Box::new(LocalPart {
            writer: BufWriter::with_capacity(256 * 1024, file),
            temp,
            target: dir.join(name),
        }))
    }

    fn scratch(&self, job_id: &str) -> io::Result<File> {
        let dir = self.root.join(job_id);
        fs::create_dir_all(&dir)?;
        tempfile::tempfile_in(dir)
    }

    fn remove_job(&self, job_id: &str) -> io::Result<()> {
        match fs::remove_dir_all(self.root.join(job_id)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_appears_under_its_name_only_when_committed() {
        let temp = tempfile::tempdir().expect("temp dir");
        let storage = LocalFolder::new(temp.path());
        let mut part = storage.create("job1", "Patient.ndjson").expect("create");
        part.write_all(b"{}\n").expect("write");
        part.flush().expect("flush");
        assert!(!temp.path().join("job1/Patient.ndjson").exists());
        part.commit().expect("commit");
        assert_eq!(
            fs::read(temp.path().join("job1/Patient.ndjson")).expect("read"),
            b"{}\n"
        );
        storage.remove_job("job1").expect("remove");
        assert!(!temp.path().join("job1").exists());
    }
}
