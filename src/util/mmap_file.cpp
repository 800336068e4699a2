#include "util/mmap_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

namespace dflash::util {

Result<std::shared_ptr<MappedFile>> MappedFile::open(const std::string& path, LoadMode mode) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return Status(e == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                  path + ": cannot open: " + std::strerror(e));
  }
  struct stat st{};
  if (fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return io_error(path + ": cannot stat: " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return invalid_argument(path + ": not a regular file");
  }
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->size_ = static_cast<size_t>(st.st_size);
  f->mode_ = mode;
  if (f->size_ > 0 && mode == LoadMode::kMmap) {
    void* p = mmap(nullptr, f->size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      return io_error(path + ": mmap failed: " + std::strerror(e));
    }
    f->data_ = static_cast<const uint8_t*>(p);
    f->map_size_ = f->size_;
  } else if (f->size_ > 0) {
    constexpr size_t kHuge = size_t(2) << 20;
    const size_t n = (f->size_ + kHuge - 1) / kHuge * kHuge;
    void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      return io_error(path + ": cannot allocate " + std::to_string(n) + " bytes to load the file: " + std::strerror(e));
    }
    f->data_ = static_cast<const uint8_t*>(p);
    f->map_size_ = n;
#ifdef MADV_HUGEPAGE
    madvise(p, n, MADV_HUGEPAGE);  // best effort: without THP this is plain anonymous memory
#endif
    auto* dst = static_cast<uint8_t*>(p);
    size_t done = 0;
    while (done < f->size_) {
      ssize_t r = ::pread(fd, dst + done, f->size_ - done, static_cast<off_t>(done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        int e = r < 0 ? errno : EIO;
        ::close(fd);
        return io_error(path + ": read failed at byte " + std::to_string(done) + ": " +
                        (r == 0 ? std::string("file shrank while loading") : std::strerror(e)));
      }
      done += static_cast<size_t>(r);
    }
    mprotect(p, n, PROT_READ);  // weights are read-only, as with the file mapping
  }
  ::close(fd);
  return f;
}

MappedFile::~MappedFile() {
  if (data_ && map_size_) munmap(const_cast<uint8_t*>(data_), map_size_);
}

Result<std::unique_ptr<AtomicFileWriter>> AtomicFileWriter::create(const std::string& path,
                                                                   bool overwrite) {
  if (!overwrite && file_exists(path))
    return invalid_argument(path + ": already exists (pass --force to overwrite)");
  std::unique_ptr<AtomicFileWriter> w(new AtomicFileWriter());
  w->path_ = path;
  w->overwrite_ = overwrite;
  std::string tmpl = path + ".tmp-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  int fd = mkstemp(buf.data());
  if (fd < 0) return io_error(path + ": cannot create temporary file: " + std::strerror(errno));
  // mkstemp creates 0600; a model file should get the usual permissions.
  mode_t mask = umask(0);
  umask(mask);
  fchmod(fd, 0666 & ~mask);
  w->fd_ = fd;
  w->tmp_path_ = buf.data();
  return w;
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !tmp_path_.empty()) ::unlink(tmp_path_.c_str());
}

Status AtomicFileWriter::write(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t k = ::write(fd_, p, n);
    if (k < 0) {
      if (errno == EINTR) continue;
      return io_error(path_ + ": write failed: " + std::strerror(errno));
    }
    p += k;
    n -= static_cast<size_t>(k);
    offset_ += static_cast<uint64_t>(k);
  }
  return Status::ok();
}

Status AtomicFileWriter::write_zeros(size_t n) {
  static const char zeros[4096] = {};
  while (n > 0) {
    size_t k = n < sizeof(zeros) ? n : sizeof(zeros);
    DFLASH_RETURN_IF_ERROR(write(zeros, k));
    n -= k;
  }
  return Status::ok();
}

Status AtomicFileWriter::commit() {
  if (fsync(fd_) != 0) return io_error(path_ + ": fsync failed: " + std::strerror(errno));
  ::close(fd_);
  fd_ = -1;
  if (!overwrite_ && file_exists(path_))
    return invalid_argument(path_ + ": already exists (pass --force to overwrite)");
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0)
    return io_error(path_ + ": rename failed: " + std::strerror(errno));
  committed_ = true;
  return Status::ok();
}

Result<std::string> read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found(path + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return io_error(path + ": read failed");
  return ss.str();
}

bool file_exists(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace dflash::util
