// SPDX-License-Identifier: GPL-3.0-or-later
#include "Jobs.h"

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <utility>

#include "JobState.h"
#include "PluginContext.h"
#include "SeriesPipeline.h"
#include "enhance/base/Error.h"
#include "enhance/base/Uid.h"
#include "enhance/dicom/DicomNetwork.h"

namespace enhance::plugin {
namespace {

constexpr const char* kSeriesJobType = "EnhanceSeries";
constexpr const char* kRetrieveJobType = "EnhanceRetrieve";

PluginContext* g_plugin = nullptr;  // set by RegisterJobsUnserializer before any job exists

// A job whose work runs on a thread of its own while it runs (one of the plugin's kept
// threads, ThreadCache.h). Orthanc calls the methods below from its job threads and HTTP
// threads; members shared with the worker are guarded by mutex_.
class ThreadedJob {
 public:
  explicit ThreadedJob(PluginContext& plugin) : plugin_(plugin) {}
  virtual ~ThreadedJob() { Halt(); }
  ThreadedJob(const ThreadedJob&) = delete;
  ThreadedJob& operator=(const ThreadedJob&) = delete;

  OrthancPluginJobStepStatus Step() {
    std::unique_lock<std::mutex> lock(mutex_);
    if (status_ == Status::kIdle) {
      status_ = Status::kRunning;
      cancel_ = false;
      state_.Reset(InitialContent());
      plugin_.metrics.jobsRunning++;
      plugin_.PublishMetrics();
      try {
        worker_ = plugin_.jobThreads.Run([this] { WorkerBody(); });
      } catch (const std::exception& e) {
        // No thread could be started for the work (the process is at its limit of threads
        // or out of memory): the job fails, saying so, and can be resubmitted.
        status_ = Status::kFailed;
        Finish(false, "no thread could be started for the job (" + std::string(e.what()) +
                          "): the server is at its limit of threads or memory; resubmit "
                          "the job when fewer jobs are running");
      }
    }
    finished_.wait_for(lock, std::chrono::milliseconds(250),
                       [this] { return status_ != Status::kRunning; });
    switch (status_) {
      case Status::kSucceeded:
        return OrthancPluginJobStepStatus_Success;
      case Status::kFailed:
        return OrthancPluginJobStepStatus_Failure;
      default:
        return OrthancPluginJobStepStatus_Continue;
    }
  }

  void Stop(OrthancPluginJobStopReason reason) {
    if (reason != OrthancPluginJobStopReason_Success &&
        reason != OrthancPluginJobStopReason_Failure) {
      Halt();  // paused or cancelled: the work stops at its next slice and stores nothing
      std::lock_guard<std::mutex> lock(mutex_);
      status_ = Status::kIdle;  // a resumed or resubmitted job starts over
    } else {
      Join();
    }
  }

  void Reset() {
    Halt();
    std::lock_guard<std::mutex> lock(mutex_);
    status_ = Status::kIdle;
    state_.Reset(InitialContent());
  }

  float Progress() const { return static_cast<float>(state_.Progress()); }

  const char* Content() {
    std::lock_guard<std::mutex> lock(textMutex_);
    contentText_ = WriteJson(state_.Content());
    return contentText_.c_str();
  }

  const char* Serialized() {
    std::lock_guard<std::mutex> lock(textMutex_);
    serializedText_ = WriteJson(Serialize());
    return serializedText_.c_str();
  }

 protected:
  virtual void Work(JobState& state, const std::atomic<bool>& cancel) = 0;
  virtual Json::Value InitialContent() const = 0;
  virtual Json::Value Serialize() const = 0;
  PluginContext& plugin_;

 private:
  enum class Status { kIdle, kRunning, kSucceeded, kFailed };

  void WorkerBody() {
    bool ok = false;
    std::string error;
    ErrorKind kind = ErrorKind::kInternal;
    try {
      Work(state_, cancel_);
      ok = true;
    } catch (const Error& e) {
      error = e.what();
      kind = e.kind();
    } catch (const std::exception& e) {
      error = e.what();
    } catch (...) {
      error = "unknown error";
    }
    Finish(ok, error, kind);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      status_ = ok ? Status::kSucceeded : Status::kFailed;
    }
    finished_.notify_all();
  }

  // The end of a run, in the job's content, the log and the metrics: `error` and `kind`
  // say why it failed.
  void Finish(bool ok, const std::string& error, ErrorKind kind = ErrorKind::kInternal) {
    if (!ok) {
      state_.Set("ErrorMessage", error);
      state_.Set("ErrorKind", ToString(kind));
      if (!cancel_) {
        plugin_.api.LogError("job " + state_.Get("Description").asString() + " failed: " + error);
      }
    }
    plugin_.metrics.jobsRunning--;
    // A job cancelled or paused by a user has not failed.
    (ok ? plugin_.metrics.jobsSucceeded
        : (cancel_ ? plugin_.metrics.jobsStopped : plugin_.metrics.jobsFailed))++;
    plugin_.PublishMetrics();
  }

  void Halt() {
    cancel_ = true;
    Join();
  }

  void Join() {
    ThreadCache::Task worker;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      std::swap(worker, worker_);
    }
    worker.Wait();
  }

  std::mutex mutex_;
  std::condition_variable finished_;
  Status status_ = Status::kIdle;
  ThreadCache::Task worker_;  // the work, on one of plugin_.jobThreads
  std::atomic<bool> cancel_{false};
  JobState state_;
  std::mutex textMutex_;
  std::string contentText_;
  std::string serializedText_;
};

class SeriesJob : public ThreadedJob {
 public:
  SeriesJob(PluginContext& plugin, JobRequest request)
      : ThreadedJob(plugin), request_(std::move(request)) {}

 protected:
  Json::Value InitialContent() const override {
    Json::Value c;
    c["Description"] =
        request_.task + " of series " + request_.seriesId + " with " + request_.model;
    c["SourceSeries"] = request_.seriesId;
    c["Task"] = request_.task;
    c["Model"] = request_.model;
    c["Origin"] = request_.origin;
    c["Force"] = request_.force;
    c["Stage"] = "pending";
    return c;
  }
  Json::Value Serialize() const override { return request_.ToJson(); }
  void Work(JobState& state, const std::atomic<bool>& cancel) override {
    if (request_.cluster && !(plugin_.cluster && plugin_.cluster->Holds(request_.seriesId))) {
      // Saved before this node restarted: the cluster's queue gives the series to the
      // node that claims it, which may be this one again under a new job.
      state.Set("Stage", "done");
      state.Set("HandedToCluster", true);
      state.SetProgress(1.0);
      return;
    }
    RunSeriesPipeline(plugin_, request_, state, cancel);
  }

 private:
  JobRequest request_;
};

class RetrieveJob : public ThreadedJob {
 public:
  RetrieveJob(PluginContext& plugin, RetrieveRequest request)
      : ThreadedJob(plugin), request_(std::move(request)) {}

 protected:
  Json::Value InitialContent() const override {
    Json::Value c;
    c["Description"] = "retrieve from " + request_.modality + " and " + request_.processing.task;
    c["Modality"] = request_.modality;
    c["Level"] = request_.level;
    c["StudyInstanceUID"] = request_.studyInstanceUid;
    c["SeriesInstanceUID"] = request_.seriesInstanceUid;
    c["Task"] = request_.processing.task;
    c["Model"] = request_.processing.model;
    c["Stage"] = "pending";
    return c;
  }
  Json::Value Serialize() const override { return request_.ToJson(); }

  void Work(JobState& state, const std::atomic<bool>& cancel) override {
    state.Set("Stage", "retrieving");
    const ModalityAddress address = LookupModality(plugin_.api, request_.modality);
    const DicomPeer peer{plugin_.forwarding.localAet, address.aet, address.host, address.port,
                         plugin_.forwarding.timeoutSeconds};
    const MoveResult moved = MoveFromPeer(
        peer, request_.studyInstanceUid,
        request_.level == "Series" ? request_.seriesInstanceUid : "", plugin_.forwarding.localAet);
    state.Set("InstancesRetrieved", moved.completed);
    state.SetProgress(0.5);
    if (cancel) throw Error(ErrorKind::kCancelled, "cancelled");

    // Every series now here that the move brought: submit one processing job each.
    std::vector<std::string> series;
    const std::string uid =
        request_.level == "Series" ? request_.seriesInstanceUid : request_.studyInstanceUid;
    for (const auto& item : plugin_.api.PostJson("/tools/lookup", uid)) {
      const std::string type = item["Type"].asString();
      const std::string id = item["ID"].asString();
      if (type == "Series") series.push_back(id);
      if (type == "Study") {
        for (const auto& s : plugin_.api.GetJson("/studies/" + id)["Series"])
          series.push_back(s.asString());
      }
    }
    if (series.empty()) {
      throw Error(ErrorKind::kNotFound, "the C-MOVE from " + request_.modality +
                                            " brought no series; check the UID and that the remote "
                                            "modality knows this node's AET (" +
                                            plugin_.forwarding.localAet + ")");
    }
    for (const auto& id : series) {
      JobRequest r = request_.processing;
      r.seriesId = id;
      r.origin = "retrieve from " + request_.modality;
      state.Append("Jobs", SubmitSeriesJob(plugin_, r));
      state.Append("Series", id);
    }
    state.Set("Stage", "done");
    state.SetProgress(1.0);
  }

 private:
  RetrieveRequest request_;
};

// C callbacks: `job` is the ThreadedJob given to OrthancPluginCreateJob. None may throw.
void Finalize(void* job) { delete static_cast<ThreadedJob*>(job); }

float GetProgress(void* job) {
  try {
    return static_cast<ThreadedJob*>(job)->Progress();
  } catch (...) {
    return 0;
  }
}

const char* GetContent(void* job) {
  try {
    return static_cast<ThreadedJob*>(job)->Content();
  } catch (...) {
    return "{}";
  }
}

const char* GetSerialized(void* job) {
  try {
    return static_cast<ThreadedJob*>(job)->Serialized();
  } catch (...) {
    return nullptr;  // not saved: better than a job that cannot be restored
  }
}

OrthancPluginJobStepStatus Step(void* job) {
  try {
    return static_cast<ThreadedJob*>(job)->Step();
  } catch (...) {
    return OrthancPluginJobStepStatus_Failure;
  }
}

OrthancPluginErrorCode Stop(void* job, OrthancPluginJobStopReason reason) {
  try {
    static_cast<ThreadedJob*>(job)->Stop(reason);
    return OrthancPluginErrorCode_Success;
  } catch (...) {
    return OrthancPluginErrorCode_Plugin;
  }
}

OrthancPluginErrorCode ResetJob(void* job) {
  try {
    static_cast<ThreadedJob*>(job)->Reset();
    return OrthancPluginErrorCode_Success;
  } catch (...) {
    return OrthancPluginErrorCode_Plugin;
  }
}

OrthancPluginJob* Wrap(PluginContext& plugin, std::unique_ptr<ThreadedJob> job, const char* type) {
  OrthancPluginJob* wrapped =
      OrthancPluginCreateJob(plugin.api.context(), job.get(), Finalize, type, GetProgress,
                             GetContent, GetSerialized, Step, Stop, ResetJob);
  if (wrapped == nullptr) throw Error(ErrorKind::kInternal, "Orthanc could not create the job");
  job.release();  // owned by Orthanc from now on; Finalize deletes it
  return wrapped;
}

std::string Submit(PluginContext& plugin, OrthancPluginJob* job, int priority) {
  char* id = OrthancPluginSubmitJob(plugin.api.context(), job, priority);
  if (id == nullptr) {
    OrthancPluginFreeJob(plugin.api.context(), job);
    throw Error(ErrorKind::kInternal, "Orthanc refused the job");
  }
  std::string result(id);
  OrthancPluginFreeString(plugin.api.context(), id);
  plugin.metrics.jobsSubmitted++;
  plugin.PublishMetrics();
  return result;
}

OrthancPluginJob* Unserialize(const char* type, const char* serialized) {
  if (g_plugin == nullptr || type == nullptr || serialized == nullptr) return nullptr;
  try {
    const Json::Value value = ParseJson(serialized, "a saved job");
    if (std::string(type) == kSeriesJobType) {
      return Wrap(*g_plugin, std::make_unique<SeriesJob>(*g_plugin, JobRequest::FromJson(value)),
                  kSeriesJobType);
    }
    if (std::string(type) == kRetrieveJobType) {
      return Wrap(*g_plugin,
                  std::make_unique<RetrieveJob>(*g_plugin, RetrieveRequest::FromJson(value)),
                  kRetrieveJobType);
    }
  } catch (const std::exception& e) {
    g_plugin->api.LogError(std::string("a saved ") + type + " job cannot be restored: " + e.what());
  } catch (...) {
  }
  return nullptr;
}

}  // namespace

Json::Value RetrieveRequest::ToJson() const {
  Json::Value v;
  v["Modality"] = modality;
  v["Level"] = level;
  v["StudyInstanceUID"] = studyInstanceUid;
  v["SeriesInstanceUID"] = seriesInstanceUid;
  v["Processing"] = processing.ToJson();
  return v;
}

RetrieveRequest RetrieveRequest::FromJson(const Json::Value& v) {
  RetrieveRequest r;
  r.modality = v["Modality"].asString();
  r.level = v["Level"].asString();
  r.studyInstanceUid = v["StudyInstanceUID"].asString();
  r.seriesInstanceUid = v["SeriesInstanceUID"].asString();
  r.processing = JobRequest::FromJson(v["Processing"]);
  return r;
}

std::string SubmitSeriesJob(PluginContext& plugin, const JobRequest& request) {
  JobRequest r = request;
  if (r.force && r.nonce.empty()) r.nonce = GenerateUid();
  return Submit(plugin, Wrap(plugin, std::make_unique<SeriesJob>(plugin, r), kSeriesJobType),
                r.priority);
}

std::string SubmitRetrieveJob(PluginContext& plugin, const RetrieveRequest& request) {
  return Submit(plugin,
                Wrap(plugin, std::make_unique<RetrieveJob>(plugin, request), kRetrieveJobType),
                request.processing.priority);
}

void RegisterJobsUnserializer(PluginContext& plugin) {
  g_plugin = &plugin;
  OrthancPluginRegisterJobsUnserializer(plugin.api.context(), Unserialize);
}

}  // namespace enhance::plugin
