// SPDX-License-Identifier: GPL-3.0-or-later
#include "PluginConfiguration.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "enhance/base/Error.h"
#include "enhance/base/Uid.h"
#include "enhance/inference/TorchModel.h"

namespace enhance::plugin {
namespace {

[[noreturn]] void Fail(const std::string& key, const std::string& what) {
  throw Error(ErrorKind::kBadInput, "configuration " + key + ": " + what);
}

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

void CheckKeys(const Json::Value& object, const std::string& key,
               const std::vector<std::string>& known) {
  for (const auto& name : object.getMemberNames()) {
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      Fail(key + "." + Printable(name), "unknown key; known keys are " + Join(known));
    }
  }
}

bool GetBool(const Json::Value& object, const std::string& parent, const char* name,
             bool fallback) {
  if (!object.isMember(name)) return fallback;
  if (!object[name].isBool()) Fail(parent + "." + name, "must be true or false");
  return object[name].asBool();
}

int GetInt(const Json::Value& object, const std::string& parent, const char* name, int fallback,
           int minimum, int maximum) {
  if (!object.isMember(name)) return fallback;
  const Json::Value& v = object[name];
  if (!v.isInt() || v.asInt() < minimum || v.asInt() > maximum) {
    Fail(parent + "." + name,
         "must be an integer from " + std::to_string(minimum) + " to " + std::to_string(maximum));
  }
  return v.asInt();
}

std::string GetString(const Json::Value& object, const std::string& parent, const char* name,
                      const std::string& fallback, bool required = false) {
  if (!object.isMember(name)) {
    if (required) Fail(parent + "." + name, "is required");
    return fallback;
  }
  if (!object[name].isString()) Fail(parent + "." + name, "must be a string");
  return object[name].asString();
}

std::vector<std::string> GetStrings(const Json::Value& object, const std::string& parent,
                                    const char* name) {
  std::vector<std::string> values;
  if (!object.isMember(name)) return values;
  const Json::Value& list = object[name];
  const std::string key = parent + "." + name;
  if (!list.isArray()) Fail(key, "must be a list of strings");
  for (Json::ArrayIndex i = 0; i < list.size(); ++i) {
    if (!list[i].isString() || list[i].asString().empty()) {
      Fail(key + "[" + std::to_string(i) + "]", "must be a non-empty string");
    }
    values.push_back(list[i].asString());
  }
  return values;
}

// Why `text` could take exponential time in a backtracking matcher (std::regex), or "":
// a repetition applied to something that already repeats or offers alternatives, as in
// "a?*", "(a+)*", "(a|ab)+" or "((a*))+" (the classic catastrophic patterns).
std::string NestedRepetition(const std::string& text) {
  struct Group {
    bool repeats = false;  // holds a quantifier or an alternative
  };
  std::vector<Group> groups(1);
  enum class Last {
    kAtom,
    kQuantifier,
    kLazyQuantifier,
    kGroupThatRepeats,
    kNone
  } last = Last::kNone;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\\') {
      ++i;
      last = Last::kAtom;
    } else if (c == '[') {
      // A character class is one atom; ']' right after '[' or '[^' is a literal.
      size_t j = i + 1;
      if (j < text.size() && text[j] == '^') ++j;
      if (j < text.size() && text[j] == ']') ++j;
      while (j < text.size() && text[j] != ']') j += text[j] == '\\' ? 2 : 1;
      i = j;
      last = Last::kAtom;
    } else if (c == '(') {
      if (i + 1 < text.size() && text[i + 1] == '?') i += 2;  // (?: (?= (?!
      groups.push_back({});
      last = Last::kNone;
    } else if (c == ')') {
      const bool repeats = groups.size() > 1 && groups.back().repeats;
      if (groups.size() > 1) groups.pop_back();
      groups.back().repeats = groups.back().repeats || repeats;
      last = repeats ? Last::kGroupThatRepeats : Last::kAtom;
    } else if (c == '|') {
      groups.back().repeats = true;
      last = Last::kNone;
    } else if (c == '*' || c == '+' || c == '?' || c == '{') {
      if (c == '?' && last == Last::kQuantifier) {
        last = Last::kLazyQuantifier;  // lazy modifier of the quantifier before it
        continue;
      }
      // "a??*" repeats the lazy "a??" as "a?*" repeats "a?".
      if (last == Last::kQuantifier || last == Last::kLazyQuantifier) {
        return "a repetition is repeated";
      }
      if (last == Last::kGroupThatRepeats) {
        return "a group that repeats or has alternatives is repeated";
      }
      if (c == '{') {
        while (i < text.size() && text[i] != '}') ++i;
      }
      groups.back().repeats = true;
      last = Last::kQuantifier;
    } else {
      last = Last::kAtom;
    }
  }
  return "";
}

std::optional<Pattern> GetPattern(const Json::Value& object, const std::string& parent,
                                  const char* name) {
  if (!object.isMember(name)) return std::nullopt;
  const std::string text = GetString(object, parent, name, "");
  if (text.size() > Pattern::kMaxLength) {
    Fail(parent + "." + name, "a regular expression of " + std::to_string(text.size()) +
                                  " characters is longer than the limit of " +
                                  std::to_string(Pattern::kMaxLength));
  }
  if (const std::string why = NestedRepetition(text); !why.empty()) {
    Fail(parent + "." + name,
         "'" + Printable(text) + "': " + why +
             ", which can make matching take exponential time; write it without nested "
             "repetition (for example 'a*' instead of 'a?*' or '(a+)*')");
  }
  // The standard library reads a repetition count such as {99999999999999999999} into a
  // long without checking for overflow: counts of more than 4 digits are refused first.
  bool inBraces = false;
  size_t digits = 0;
  size_t run = 0;  // a back-reference such as \\60000000000000000000 overflows the same way
  for (const char c : text) {
    if (c == '{') inBraces = true;
    if (c == '}') inBraces = false;
    const bool digit = std::isdigit(static_cast<unsigned char>(c)) != 0;
    digits = inBraces && digit ? digits + 1 : 0;
    run = digit ? run + 1 : 0;
    if (digits > 4 || run > 9) {
      Fail(parent + "." + name, "'" + Printable(text) +
                                    "': a repetition count of more than 4 digits, or a number "
                                    "of more than 9, is not accepted");
    }
  }
  try {
    return Pattern{
        text, std::make_shared<const std::regex>(text, std::regex::ECMAScript | std::regex::icase)};
  } catch (const std::regex_error& e) {
    Fail(parent + "." + name,
         "'" + Printable(text) + "' is not a valid regular expression: " + e.what());
  }
}

struct KnownDestinations {
  bool check = false;
  std::set<std::string> modalities;
  std::set<std::string> peers;
};

RoutingRule ParseRule(const Json::Value& value, const std::string& key,
                      const KnownDestinations& known) {
  if (!value.isObject()) Fail(key, "must be an object with Task and Model");
  CheckKeys(value, key,
            {"Name", "Modalities", "SeriesDescription", "ProtocolName", "BodyPartExamined",
             "ImageType", "MinSlices", "MaxSlices", "CallingAETs", "CalledAETs", "Task", "Model",
             "Options", "Destinations", "Priority"});
  RoutingRule rule;
  rule.name = GetString(value, key, "Name", key);
  rule.task = GetString(value, key, "Task", "", true);
  const auto& tasks = KnownTasks();
  if (std::find(tasks.begin(), tasks.end(), rule.task) == tasks.end()) {
    Fail(key + ".Task", "'" + Printable(rule.task) + "' is not a task; use one of " + Join(tasks));
  }
  rule.model = GetString(value, key, "Model", "", true);
  rule.modalities = GetStrings(value, key, "Modalities");
  rule.seriesDescription = GetPattern(value, key, "SeriesDescription");
  rule.protocolName = GetPattern(value, key, "ProtocolName");
  rule.bodyPartExamined = GetPattern(value, key, "BodyPartExamined");
  rule.imageType = GetStrings(value, key, "ImageType");
  rule.minSlices = GetInt(value, key, "MinSlices", 0, 0, 100000);
  rule.maxSlices = GetInt(value, key, "MaxSlices", 0, 0, 100000);
  if (rule.maxSlices > 0 && rule.maxSlices < rule.minSlices) {
    Fail(key + ".MaxSlices", "must not be smaller than MinSlices");
  }
  rule.callingAets = GetStrings(value, key, "CallingAETs");
  rule.calledAets = GetStrings(value, key, "CalledAETs");
  if (value.isMember("Options")) {
    if (!value["Options"].isObject()) Fail(key + ".Options", "must be an object");
    rule.options = value["Options"];
    if (rule.options.isMember("Uncertainty") && !rule.options["Uncertainty"].isBool()) {
      Fail(key + ".Options.Uncertainty", "must be true or false");
    }
    if (rule.options.isMember("DomainCheck")) {
      const Json::Value& action = rule.options["DomainCheck"];
      const std::string name = action.isString() ? action.asString() : "";
      if (name != "warn" && name != "refuse" && name != "off") {
        Fail(key + ".Options.DomainCheck", "must be \"warn\", \"refuse\" or \"off\"");
      }
    }
  }
  rule.destinations = GetStrings(value, key, "Destinations");
  for (size_t i = 0; i < rule.destinations.size(); ++i) {
    const std::string& d = rule.destinations[i];
    const std::string dkey = key + ".Destinations[" + std::to_string(i) + "]";
    if (d == "$sender" || !known.check) continue;
    const bool modality = known.modalities.count(d) > 0;
    const bool peer = known.peers.count(d) > 0;
    if (modality && peer)
      Fail(dkey,
           "'" + Printable(d) + "' names both a DICOM modality and an Orthanc peer; rename one");
    if (!modality && !peer) {
      Fail(dkey, "'" + Printable(d) +
                     "' is neither in DicomModalities nor in OrthancPeers; add it there or use "
                     "\"$sender\"");
    }
  }
  rule.priority = GetInt(value, key, "Priority", 0, -1000, 1000);
  return rule;
}

KnownDestinations Destinations(const Json::Value& orthanc) {
  KnownDestinations known;
  known.check = !(orthanc.isMember("DicomModalitiesInDatabase") &&
                  orthanc["DicomModalitiesInDatabase"].isBool() &&
                  orthanc["DicomModalitiesInDatabase"].asBool());
  for (const char* section : {"DicomModalities", "OrthancPeers"}) {
    if (orthanc.isMember(section) && orthanc[section].isObject()) {
      for (const auto& name : orthanc[section].getMemberNames()) {
        (std::string(section) == "DicomModalities" ? known.modalities : known.peers).insert(name);
      }
    }
  }
  return known;
}

}  // namespace

const std::vector<std::string>& KnownTasks() {
  static const std::vector<std::string> tasks{"denoise", "superres", "mr2ct"};
  return tasks;
}

const std::string& PluginConfiguration::SuffixFor(const std::string& task) const {
  static const std::string fallback = " [AI enhanced]";
  auto it = seriesDescriptionSuffix.find(task);
  return it == seriesDescriptionSuffix.end() ? fallback : it->second;
}

int PluginConfiguration::SeriesNumberOffsetFor(const std::string& task) const {
  auto it = seriesNumberOffset.find(task);
  return it == seriesNumberOffset.end() ? 1000 : it->second;
}

namespace {

// How derived series are numbered and described: SeriesNumberOffset and
// SeriesDescriptionSuffix, each for every task or per task.
void ParseNaming(const Json::Value& section, const std::string& key, PluginConfiguration& config) {
  if (section.isMember("SeriesNumberOffset")) {
    // One number for every task, or one per task.
    const Json::Value& offset = section["SeriesNumberOffset"];
    const std::string offsetKey = key + ".SeriesNumberOffset";
    if (offset.isObject()) {
      CheckKeys(offset, offsetKey, KnownTasks());
      for (const auto& task : offset.getMemberNames()) {
        config.seriesNumberOffset[task] = GetInt(offset, offsetKey, task.c_str(), 0, 0, 1000000);
      }
    } else {
      const int value = GetInt(section, key, "SeriesNumberOffset", 0, 0, 1000000);
      for (auto& entry : config.seriesNumberOffset) entry.second = value;
    }
  }

  if (section.isMember("SeriesDescriptionSuffix")) {
    const Json::Value& suffixes = section["SeriesDescriptionSuffix"];
    const std::string suffixKey = key + ".SeriesDescriptionSuffix";
    if (!suffixes.isObject())
      Fail(suffixKey, "must map a task to a suffix, e.g. {\"denoise\": \" [AI denoised]\"}");
    CheckKeys(suffixes, suffixKey, KnownTasks());
    for (const auto& task : suffixes.getMemberNames()) {
      config.seriesDescriptionSuffix[task] = GetString(suffixes, suffixKey, task.c_str(), "");
    }
  }
}

// Where models come from and how they run: models folders, device, memory, threads
// for inference and early start.
void ParseInference(const Json::Value& section, const std::string& key,
                    PluginConfiguration& config) {
  if (section.isMember("ModelsDirectories")) {
    const Json::Value& dirs = section["ModelsDirectories"];
    if (!dirs.isArray()) Fail(key + ".ModelsDirectories", "must be a list of folders");
    for (Json::ArrayIndex i = 0; i < dirs.size(); ++i) {
      if (!dirs[i].isString() || dirs[i].asString().empty()) {
        Fail(key + ".ModelsDirectories[" + std::to_string(i) + "]", "must be a folder path");
      }
      config.modelsDirectories.push_back(dirs[i].asString());
    }
  }
  config.device = GetString(section, key, "Device", config.device);
  try {
    CheckDeviceName(config.device);
  } catch (const Error& e) {
    Fail(key + ".Device", e.what());
  }
  config.memoryBudgetMb =
      GetInt(section, key, "MemoryBudgetMB", config.memoryBudgetMb, 16, 1 << 20);
  config.concurrentInferences =
      GetInt(section, key, "ConcurrentInferences", config.concurrentInferences, 1, 64);
  config.optimizeForCpu = GetBool(section, key, "OptimizeForCpu", config.optimizeForCpu);
  config.cpuPrecision = GetString(section, key, "CpuPrecision", config.cpuPrecision);
  if (config.cpuPrecision != "auto" && config.cpuPrecision != "float") {
    Fail(key + ".CpuPrecision", "'" + Printable(config.cpuPrecision) +
                                    "' must be auto (bf16 or int8 where a model allows it "
                                    "and the processor has it) or float");
  }
  config.earlyStartMb = GetInt(section, key, "EarlyStartMB", config.earlyStartMb, 0, 1 << 20);
  config.simulatedDeviceMemoryMb =
      GetInt(section, key, "SimulatedDeviceMemoryMB", config.simulatedDeviceMemoryMb, 0, 1 << 20);
}

// The built-in self-supervised denoiser: how long and how much it learns from each series.
void ParseSelfSupervised(const Json::Value& section, const std::string& parent,
                         PluginConfiguration& config) {
  SelfSupervisedParameters& p = config.selfSupervised;
  p.device = config.device;
  if (!section.isMember("SelfSupervised")) return;
  const Json::Value& s = section["SelfSupervised"];
  const std::string key = parent + ".SelfSupervised";
  if (!s.isObject()) Fail(key, "must be an object, e.g. {\"TimeBudgetSeconds\": 60}");
  CheckKeys(s, key,
            {"TimeBudgetSeconds", "Steps", "Seed", "Augmentations", "Method", "RemoveRicianBias"});
  if (s.isMember("Method")) {
    const Json::Value& method = s["Method"];
    const std::optional<SelfSupervisedMethod> named =
        SelfSupervisedMethodNamed(method.isString() ? method.asString() : "");
    if (!named) Fail(key + ".Method", "must be \"auto\", \"noise2noise\" or \"blind-spot\"");
    p.method = *named;
  }
  if (s.isMember("TimeBudgetSeconds")) {
    const Json::Value& budget = s["TimeBudgetSeconds"];
    if (!budget.isNumeric() || budget.asDouble() <= 0 || budget.asDouble() > 86400) {
      Fail(key + ".TimeBudgetSeconds", "must be a number of seconds above 0, at most 86400");
    }
    p.timeBudgetSeconds = budget.asDouble();
  }
  p.steps = GetInt(s, key, "Steps", p.steps, 1, 1000000);
  p.seed = static_cast<uint64_t>(GetInt(s, key, "Seed", static_cast<int>(p.seed), 0, 1 << 30));
  p.augmentations = GetInt(s, key, "Augmentations", p.augmentations, 1, 8);
  if (p.augmentations != 1 && p.augmentations != 2 && p.augmentations != 4 &&
      p.augmentations != 8) {
    Fail(key + ".Augmentations", "must be 1, 2, 4 or 8 (flips and transposes averaged)");
  }
  p.removeRicianBias = GetBool(s, key, "RemoveRicianBias", p.removeRicianBias);
}

// The PostgreSQL database of the claims: Enhance.Cluster.Database, or else the
// PostgreSQL section of Orthanc's index plugin, whose database the nodes share anyway.
std::map<std::string, std::string> ParseClusterDatabase(const Json::Value& cluster,
                                                        const std::string& key,
                                                        const Json::Value& orthancConfiguration) {
  const bool own = cluster.isMember("Database");
  const Json::Value& db = own ? cluster["Database"] : orthancConfiguration["PostgreSQL"];
  const std::string dbKey = own ? key + ".Database" : "PostgreSQL";
  if (!db.isObject()) {
    Fail(key + ".Database",
         "no PostgreSQL database for the claims: set it, or configure Orthanc's PostgreSQL "
         "index plugin (the nodes of a cluster share its index)");
  }
  if (own) CheckKeys(db, dbKey, {"Host", "Port", "Database", "Username", "Password"});
  if (!own && db.isMember("Lock") && !(db["Lock"].isBool() && !db["Lock"].asBool())) {
    Fail(key, "PostgreSQL.Lock must be false in a cluster: every node writes to the same index");
  }
  std::map<std::string, std::string> keywords;
  try {
    keywords["host"] = GetString(db, dbKey, "Host", "127.0.0.1");
    keywords["port"] = std::to_string(GetInt(db, dbKey, "Port", 5432, 1, 65535));
    keywords["dbname"] = GetString(db, dbKey, "Database", "", true);
    keywords["user"] = GetString(db, dbKey, "Username", "", true);
    keywords["password"] = GetString(db, dbKey, "Password", "");
  } catch (const Error& e) {
    if (own) throw;
    // The index plugin's section, read for the claims: the message says so.
    const std::string what = e.what();
    const std::string prefix = "configuration ";
    Fail(key, "the claims use the index's database, and " +
                  (what.rfind(prefix, 0) == 0 ? what.substr(prefix.size()) : what));
  }
  return keywords;
}

void ParseCluster(const Json::Value& section, const std::string& parent,
                  const Json::Value& orthancConfiguration, PluginConfiguration& config) {
  ClusterSettings& c = config.cluster;
  if (!section.isMember("Cluster")) return;
  const Json::Value& s = section["Cluster"];
  const std::string key = parent + ".Cluster";
  if (!s.isObject()) Fail(key, "must be an object, e.g. {\"Enable\": true, \"Broker\": {...}}");
  CheckKeys(s, key,
            {"Enable", "NodeName", "Broker", "Queue", "MaxDeliveries", "Prefetch", "LeaseSeconds",
             "Database"});
  c.enabled = GetBool(s, key, "Enable", false);
  if (!c.enabled) return;
  const std::string serverId = orthancConfiguration["DatabaseServerIdentifier"].isString()
                                   ? orthancConfiguration["DatabaseServerIdentifier"].asString()
                                   : "";
  c.node = GetString(s, key, "NodeName", serverId);
  if (c.node.empty()) {
    Fail(key + ".NodeName",
         "is required (or Orthanc's DatabaseServerIdentifier): a name unique to this node");
  }
  if (s.isMember("Broker")) {
    const Json::Value& b = s["Broker"];
    const std::string brokerKey = key + ".Broker";
    if (!b.isObject()) Fail(brokerKey, "must be an object, e.g. {\"Host\": \"rabbitmq\"}");
    CheckKeys(b, brokerKey, {"Host", "Port", "Username", "Password", "VirtualHost"});
    c.broker.host = GetString(b, brokerKey, "Host", c.broker.host);
    c.broker.port = GetInt(b, brokerKey, "Port", c.broker.port, 1, 65535);
    c.broker.user = GetString(b, brokerKey, "Username", c.broker.user);
    c.broker.password = GetString(b, brokerKey, "Password", c.broker.password);
    c.broker.virtualHost = GetString(b, brokerKey, "VirtualHost", c.broker.virtualHost);
  }
  c.broker.queue = GetString(s, key, "Queue", c.broker.queue);
  if (c.broker.queue.empty() || c.broker.queue.size() > 200) {
    Fail(key + ".Queue", "must be 1 to 200 characters");
  }
  c.broker.maxDeliveries = GetInt(s, key, "MaxDeliveries", c.broker.maxDeliveries, 1, 1000);
  c.broker.prefetch = GetInt(s, key, "Prefetch", config.concurrentSeries + 1, 1, 1000);
  c.leaseSeconds = GetInt(s, key, "LeaseSeconds", c.leaseSeconds, 3, 3600);
  c.database = ParseClusterDatabase(s, key, orthancConfiguration);
  const Json::Value& stableAge = orthancConfiguration["StableAge"];
  c.stableAgeSeconds = stableAge.isInt() ? stableAge.asInt() : 60;
}

// Rules, how they are evaluated, and forwarding to their destinations.
void ParseRules(const Json::Value& section, const std::string& key,
                const Json::Value& orthancConfiguration, PluginConfiguration& config) {
  const std::string evaluation = GetString(section, key, "RuleEvaluation", "FirstMatch");
  if (evaluation == "FirstMatch") {
    config.ruleEvaluation = RuleEvaluation::kFirstMatch;
  } else if (evaluation == "AllMatches") {
    config.ruleEvaluation = RuleEvaluation::kAllMatches;
  } else {
    Fail(key + ".RuleEvaluation",
         "'" + Printable(evaluation) + "' must be FirstMatch or AllMatches");
  }
  config.forwarding.attempts =
      GetInt(section, key, "ForwardAttempts", config.forwarding.attempts, 1, 100);
  if (section.isMember("ForwardRetryDelaySeconds")) {
    const Json::Value& delay = section["ForwardRetryDelaySeconds"];
    if (!delay.isNumeric() || delay.asDouble() < 0 || delay.asDouble() > 3600) {
      Fail(key + ".ForwardRetryDelaySeconds", "must be a number of seconds from 0 to 3600");
    }
    config.forwarding.firstDelaySeconds = delay.asDouble();
  }
  const KnownDestinations known = Destinations(orthancConfiguration);
  if (section.isMember("Rules")) {
    const Json::Value& rules = section["Rules"];
    if (!rules.isArray()) Fail(key + ".Rules", "must be a list of rules");
    std::set<std::string> names;
    for (Json::ArrayIndex i = 0; i < rules.size(); ++i) {
      const std::string ruleKey = key + ".Rules[" + std::to_string(i) + "]";
      RoutingRule rule = ParseRule(rules[i], ruleKey, known);
      if (!names.insert(rule.name).second)
        Fail(ruleKey + ".Name", "'" + Printable(rule.name) + "' is used twice");
      config.rules.push_back(std::move(rule));
    }
  }
}

}  // namespace

PluginConfiguration ParseConfiguration(const Json::Value& orthancConfiguration) {
  PluginConfiguration config;
  if (!orthancConfiguration.isObject() || !orthancConfiguration.isMember("Enhance")) return config;
  const Json::Value& section = orthancConfiguration["Enhance"];
  const std::string key = "Enhance";
  if (!section.isObject()) Fail(key, "must be an object");
  CheckKeys(section, key,
            {"Enable",
             "Threads",
             "ConcurrentSeries",
             "ProcessDerivedSeries",
             "UidRoot",
             "SeriesNumberOffset",
             "SeriesDescriptionSuffix",
             "Rules",
             "RuleEvaluation",
             "ForwardAttempts",
             "ForwardRetryDelaySeconds",
             "ModelsDirectories",
             "Device",
             "MemoryBudgetMB",
             "ConcurrentInferences",
             "OptimizeForCpu",
             "CpuPrecision",
             "EarlyStartMB",
             "SimulatedDeviceMemoryMB",
             "SelfSupervised",
             "UncertaintyThreshold",
             "Cluster"});

  config.enabled = GetBool(section, key, "Enable", config.enabled);
  config.threads = GetInt(section, key, "Threads", config.threads, 0, 1024);
  config.concurrentSeries =
      GetInt(section, key, "ConcurrentSeries", config.concurrentSeries, 1, 64);
  config.processDerivedSeries =
      GetBool(section, key, "ProcessDerivedSeries", config.processDerivedSeries);
  config.uidRoot = GetString(section, key, "UidRoot", config.uidRoot);
  if (!config.uidRoot.empty()) {
    try {
      GenerateUid(config.uidRoot);
    } catch (const Error& e) {
      Fail(key + ".UidRoot", e.what());
    }
  }
  ParseNaming(section, key, config);
  ParseInference(section, key, config);
  ParseSelfSupervised(section, key, config);
  if (section.isMember("UncertaintyThreshold")) {
    const Json::Value& threshold = section["UncertaintyThreshold"];
    if (!threshold.isNumeric() || threshold.asDouble() < 0) {
      Fail(key + ".UncertaintyThreshold", "must be a number of at least 0 (HU for CT)");
    }
    config.uncertaintyThreshold = threshold.asDouble();
  }
  ParseRules(section, key, orthancConfiguration, config);
  ParseCluster(section, key, orthancConfiguration, config);
  return config;
}

}  // namespace enhance::plugin
