//! Where export files go: an [`object_store`] store, a local folder by default and
//! S3-compatible object storage in production (`[bulk] storage = "s3"`), with one code path for
//! both: `{prefix}/{job_id}/{name}`.
//!
//! Every file is a multipart upload that only becomes an object when it completes (S3's
//! CompleteMultipartUpload; a rename from a staging file on the local backend, which fsyncs), so
//! nothing lists or serves a half-written file. The export writes on a blocking thread (it
//! parses and serializes), so [`PartFile`] is a plain `Write` that hands whole parts to the
//! async upload. Downloads stream a byte range of the object in chunks.

use std::fs::File;
use std::io::{self, Write};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, WriteMultipart};
use tokio::runtime::Handle;

/// The `[bulk]` settings that choose and reach the storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// A folder on this machine.
    Local { root: PathBuf },
    /// An S3-compatible bucket. Credentials come from the environment (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, or the instance's role), never the
    /// config file.
    S3 {
        bucket: String,
        /// Empty: AWS itself; else the service's URL (MinIO, Ceph, R2...).
        endpoint: String,
        region: String,
        /// Key prefix of every export file (`exports` -> `exports/{job}/{name}`).
        prefix: String,
        /// Whether an `http://` endpoint is allowed (a test or an in-cluster service).
        allow_http: bool,
        /// Local folder for the scratch files of `organizeOutputBy` (never uploaded).
        scratch: PathBuf,
    },
}

/// Bytes per uploaded part. S3 needs at least 5 MiB in every part but the last; the local
/// backend writes parts at their offsets, so smaller parts keep memory low with many types.
const S3_PART: usize = 5 << 20;
const LOCAL_PART: usize = 1 << 20;
/// Parts of one file in flight at once (each holds its bytes until sent).
const PARTS_IN_FLIGHT: usize = 2;
/// Download chunks buffered ahead of the client.
const DOWNLOAD_CHUNKS_AHEAD: usize = 4;

/// A file being written; invisible to readers until [`PartFile::commit`].
pub trait PartFile: Write + Send {
    /// Uploads what is left, completes the upload, and so publishes the file.
    fn commit(self: Box<Self>) -> io::Result<()>;
}

/// The storage of export files, one folder (key prefix) per job.
#[derive(Debug, Clone)]
pub struct ExportStorage {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    part_size: usize,
    scratch: PathBuf,
}

fn storage_error(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e),
        other => io::Error::other(other),
    }
}

impl ExportStorage {
    /// The storage `config` describes; fails on settings the backend refuses.
    pub fn open(config: &StorageConfig) -> io::Result<Self> {
        match config {
            StorageConfig::Local { root } => Self::local(root),
            StorageConfig::S3 {
                bucket,
                endpoint,
                region,
                prefix,
                allow_http,
                scratch,
            } => {
                let mut builder = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_region(region)
                    .with_allow_http(*allow_http);
                if !endpoint.is_empty() {
                    builder = builder.with_endpoint(endpoint);
                }
                let store = builder.build().map_err(storage_error)?;
                Ok(Self {
                    store: Arc::new(store),
                    prefix: Path::from(prefix.as_str()),
                    part_size: S3_PART,
                    scratch: scratch.clone(),
                })
            }
        }
    }

    /// Export files in a local folder: `{root}/{job_id}/{name}`, fsynced before they appear.
    pub fn local(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&root)
            .map_err(storage_error)?
            .with_fsync(true)
            .with_automatic_cleanup(true);
        Ok(Self {
            store: Arc::new(store),
            prefix: Path::default(),
            part_size: LOCAL_PART,
            scratch: root.join(".scratch"),
        })
    }

    fn location(&self, job_id: &str, name: &str) -> Path {
        self.prefix.clone().join(job_id).join(name)
    }

    /// Starts a file. Call from a blocking thread of the runtime (the export's writer).
    pub fn create(&self, job_id: &str, name: &str) -> io::Result<Box<dyn PartFile>> {
        let handle = Handle::try_current().map_err(io::Error::other)?;
        let upload = handle
            .block_on(self.store.put_multipart(&self.location(job_id, name)))
            .map_err(storage_error)?;
        Ok(Box::new(UploadPart {
            upload: WriteMultipart::new_with_chunk_size(upload, self.part_size),
            buffer: Vec::with_capacity(self.part_size),
            part_size: self.part_size,
            handle,
        }))
    }

    /// An anonymous local scratch file for a job's own use (never uploaded, gone when dropped).
    pub fn scratch(&self, _job_id: &str) -> io::Result<File> {
        std::fs::create_dir_all(&self.scratch)?;
        tempfile::tempfile_in(&self.scratch)
    }

    /// Deletes every file of a job (cancellation, failure, expiry).
    pub async fn remove_job(&self, job_id: &str) -> io::Result<()> {
        let prefix = self.prefix.clone().join(job_id);
        let locations = self
            .store
            .list(Some(&prefix))
            .map(|meta| meta.map(|m| m.location))
            .boxed();
        let mut deleted = self.store.delete_stream(locations);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(storage_error(e)),
            }
        }
        Ok(())
    }

    /// The size of a file; `None` if there is no such file.
    pub async fn size(&self, job_id: &str, name: &str) -> io::Result<Option<u64>> {
        match self.store.head(&self.location(job_id, name)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage_error(e)),
        }
    }

    /// The bytes `range` of a file, as a stream of chunks read ahead a few at a time (so a
    /// large file never sits in memory).
    pub fn read(
        &self,
        job_id: &str,
        name: &str,
        range: Range<u64>,
    ) -> tokio_stream::wrappers::ReceiverStream<io::Result<Bytes>> {
        let (tx, rx) = tokio::sync::mpsc::channel(DOWNLOAD_CHUNKS_AHEAD);
        let store = self.store.clone();
        let location = self.location(job_id, name);
        tokio::spawn(async move {
            let options = GetOptions {
                range: (!range.is_empty()).then_some(GetRange::Bounded(range)),
                ..GetOptions::default()
            };
            let mut chunks = match store.get_opts(&location, options).await {
                Ok(result) => result.into_stream(),
                Err(e) => {
                    let _ = tx.send(Err(storage_error(e))).await;
                    return;
                }
            };
            while let Some(chunk) = chunks.next().await {
                if tx.send(chunk.map_err(storage_error)).await.is_err() {
                    return; // the client went away
                }
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }
}

/// A multipart upload fed by a blocking writer.
struct UploadPart {
    upload: WriteMultipart,
    buffer: Vec<u8>,
    part_size: usize,
    handle: Handle,
}

impl UploadPart {
    /// Sends the buffer as a part, after waiting for room among the parts in flight.
    fn send_part(&mut self) -> io::Result<()> {
        self.handle
            .block_on(self.upload.wait_for_capacity(PARTS_IN_FLIGHT))
            .map_err(storage_error)?;
        let part = std::mem::replace(&mut self.buffer, Vec::with_capacity(self.part_size));
        self.upload.put(Bytes::from(part));
        Ok(())
    }
}

impl Write for UploadPart {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.part_size - self.buffer.len();
        let n = buf.len().min(room);
        self.buffer.extend_from_slice(&buf[..n]);
        if self.buffer.len() == self.part_size {
            self.send_part()?;
        }
        Ok(n)
    }

    /// Parts are sent when full; a flush sends nothing early (S3 parts have a minimum size).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl PartFile for UploadPart {
    fn commit(mut self: Box<Self>) -> io::Result<()> {
        if !self.buffer.is_empty() {
            let rest = std::mem::take(&mut self.buffer);
            self.upload.put(Bytes::from(rest));
        }
        let UploadPart { upload, handle, .. } = *self;
        handle.block_on(upload.finish()).map_err(storage_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_appears_under_its_name_only_when_committed() {
        let temp = tempfile::tempdir().expect("temp dir");
        let storage = ExportStorage::local(temp.path()).expect("storage");
        let writer = storage.clone();
        let (part, before) = tokio::task::spawn_blocking(move || {
            let mut part = writer.create("job1", "Patient.ndjson").expect("create");
            // More than one part, so the upload really is multipart.
            for _ in 0..(LOCAL_PART / 3 + 1) {
                part.write_all(b"{}\n").expect("write");
            }
            let before = std::fs::read_dir(temp_dir_of(&writer, "job1"))
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .any(|e| e.file_name() == "Patient.ndjson")
                })
                .unwrap_or(false);
            (part, before)
        })
        .await
        .expect("writer");
        assert!(!before, "no file under its name before the commit");
        tokio::task::spawn_blocking(move || part.commit().expect("commit"))
            .await
            .expect("commit");
        let size = storage
            .size("job1", "Patient.ndjson")
            .await
            .expect("head")
            .expect("file");
        assert_eq!(size, 3 * (LOCAL_PART as u64 / 3 + 1));
        let mut tail = Vec::new();
        let mut chunks = storage.read("job1", "Patient.ndjson", size - 3..size);
        while let Some(chunk) = chunks.next().await {
            tail.extend_from_slice(&chunk.expect("chunk"));
        }
        assert_eq!(tail, b"{}\n");
        storage.remove_job("job1").await.expect("remove");
        assert_eq!(
            storage.size("job1", "Patient.ndjson").await.expect("head"),
            None
        );
    }

    fn temp_dir_of(storage: &ExportStorage, job: &str) -> PathBuf {
        storage.scratch.parent().expect("root").join(job)
    }
}
