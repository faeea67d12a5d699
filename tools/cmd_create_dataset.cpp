// tools/cmd_create_dataset.cpp — `inspire-classifier create-dataset`: gather labeled training data
// from INSPIRE (OpenSearch with credentials, or the public REST API). The work is done by
// harvest/harvest.h; this file parses flags, reads the credentials from the environment and
// prints progress and the summary. See docs/create-dataset.md.
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "harvest/harvest.h"
#include "tools/cli.h"

namespace {

std::string two_digits(int m) { return (m < 10 ? "0" : "") + std::to_string(m); }

int run_create_dataset(int argc, char** argv) {
  CLI::App app(
      "Gather a labeled training set (core, non_core, rejected) from INSPIRE into JSON Lines that\n"
      "`train -d` reads: one object per line with id (control number), title, abstract, text\n"
      "(title + \" <ENDTITLE> \" + abstract), label, inspire_categories, created. Records without an\n"
      "abstract are dropped; a control number is written once.\n\n"
      "Sources:\n"
      "  --source opensearch --es-url URL   INSPIRE's OpenSearch (as scripts/create_dataset.py):\n"
      "      records-hep: core (core: true), non_core (core: false or absent), by _created;\n"
      "      holdingpen-hep: rejected (_extra_data.approved: false), by acquisition date.\n"
      "      Credentials from the environment only: ES_USERNAME and ES_PASSWORD.\n"
      "  --source inspire-api [--api-url URL]   the public REST API (no credentials). Rejected\n"
      "      papers are not public, so this gives core and non_core only. Stays under INSPIRE's\n"
      "      rate limit (15 requests / 5 s) and honours HTTP 429 Retry-After.\n\n"
      "The dates are inclusive: --from 2020-01 --to 2020-12 reads all of 2020. The run goes one\n"
      "month at a time; after an interruption, the same command with --resume continues after the\n"
      "last finished month. The output appears (atomically) only when the run is complete.\n\n"
      "Examples:\n"
      "  inspire-classifier create-dataset --source inspire-api --from 2024-01 --to 2024-03 -o data.jsonl\n"
      "  ES_USERNAME=u ES_PASSWORD=p inspire-classifier create-dataset --source opensearch \\\n"
      "      --es-url https://os-inspire-prod.cern.ch/es --from 2023 --to 2024 -o data.jsonl",
      "inspire-classifier create-dataset");
  std::string source, from, to, output;
  int year_from = 0, month_from = 0, year_to = 0, month_to = 0;
  harvest::Options opt;
  bool quiet = false, no_rejected = false;
  double time_scale = 1;
  app.add_option("--source", source, "opensearch or inspire-api")
      ->required()
      ->check(CLI::IsMember({"opensearch", "inspire-api"}));
  app.add_option("--from", from, "first month, YYYY or YYYY-MM (inclusive)");
  app.add_option("--to", to, "last month, YYYY or YYYY-MM (inclusive: the whole month is read)");
  app.add_option("--year-from", year_from, "the original's spelling of --from (with --month-from)");
  app.add_option("--month-from", month_from, "see --year-from (default 1)")->check(CLI::Range(1, 12));
  app.add_option("--year-to", year_to, "the original's spelling of --to (with --month-to)");
  app.add_option("--month-to", month_to, "see --year-to (default 12; inclusive)")->check(CLI::Range(1, 12));
  app.add_option("-o,--output", output, "JSON Lines file to write")->required();
  app.add_option("--es-url", opt.es_url, "OpenSearch base URL for records-hep (e.g. https://host/es)");
  app.add_option("--holdingpen-url", opt.holdingpen_url,
                 "OpenSearch base URL for holdingpen-hep (default: --es-url)");
  app.add_flag("--no-rejected", no_rejected, "OpenSearch: skip holdingpen-hep (no rejected records)");
  app.add_option("--api-url", opt.api_url, "INSPIRE REST API base URL")->capture_default_str();
  app.add_option("--ca-cert", opt.ca_cert, "PEM file of a private CA to trust for https")->check(CLI::ExistingFile);
  app.add_option("--page-size", opt.es_page_size, "OpenSearch scroll page size")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));
  app.add_option("--api-page-size", opt.api_page_size, "REST API page size")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--retries", opt.retry.max_attempts, "attempts per request on network errors and 5xx")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  app.add_option("--timeout", opt.timeout_s, "seconds allowed for each network step")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_flag("--resume", opt.resume, "continue an interrupted run (same source, URL and dates)");
  app.add_flag("-q,--quiet", quiet, "no progress lines (warnings and errors still go to stderr)");
  // Hidden, for tests: scales every wait (backoff, Retry-After, rate-limit window) and the
  // REST API's result limit.
  app.add_option("--time-scale", time_scale)->group("")->check(CLI::NonNegativeNumber);
  app.add_option("--max-results", opt.max_results)->group("")->check(CLI::PositiveNumber);
  if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;

  bool legacy = year_from || year_to || month_from || month_to;
  if (legacy && (!from.empty() || !to.empty())) {
    cli::error("give either --from/--to or --year-from/--year-to, not both");
    return 2;
  }
  if (legacy) {
    if (!year_from || !year_to) {
      cli::error("--year-from and --year-to are both needed");
      return 2;
    }
    from = std::to_string(year_from) + "-" + two_digits(month_from ? month_from : 1);
    to = std::to_string(year_to) + "-" + two_digits(month_to ? month_to : 12);
  }
  if (from.empty() || to.empty()) {
    cli::error("give the dates: --from YYYY[-MM] --to YYYY[-MM] (see --help)");
    return 2;
  }
  try {
    opt.range = harvest::make_range(from, to);
  } catch (const std::exception& e) {
    cli::error(e.what());
    return 2;
  }
  opt.output = output;
  opt.rejected = !no_rejected;
  opt.retry.time_scale = time_scale;
  if (source == "opensearch") {
    opt.source = harvest::Source::OpenSearch;
    if (opt.es_url.empty()) {
      cli::error("--source opensearch needs --es-url");
      return 2;
    }
    const char* u = std::getenv("ES_USERNAME");
    const char* p = std::getenv("ES_PASSWORD");
    opt.username = u ? u : "";
    opt.password = p ? p : "";
    if (opt.username.empty() != opt.password.empty()) {
      cli::error("set both ES_USERNAME and ES_PASSWORD (or neither)");
      return 2;
    }
    if (opt.username.empty() && !quiet)
      std::fprintf(stderr, "create-dataset: ES_USERNAME / ES_PASSWORD not set: connecting without authentication\n");
  } else {
    opt.source = harvest::Source::InspireApi;
    if (!opt.es_url.empty() || !opt.holdingpen_url.empty()) {
      cli::error("--es-url / --holdingpen-url are for --source opensearch");
      return 2;
    }
  }

  const bool tty = ::isatty(2);
  harvest::Callbacks cb;
  cb.warn = [&](const std::string& m) {
    if (tty && !quiet) std::fputc('\n', stderr);
    std::fprintf(stderr, "create-dataset: warning: %s\n", m.c_str());
  };
  if (!quiet) {
    cb.progress = [&](const harvest::Stats& s, const std::string& window) {
      double rate = s.seconds > 0 ? double(s.kept() - s.resumed_rows) / s.seconds : 0;
      std::fprintf(stderr,
                   "%swindow %s (%zu/%zu done): core %zu, non_core %zu, rejected %zu; %zu requests, %.1f records/s%s",
                   tty ? "\r" : "", window.c_str(), s.windows_done, s.windows_total, s.per_label[2], s.per_label[1],
                   s.per_label[0], s.requests, rate, tty ? "   " : "\n");
      std::fflush(stderr);
    };
  }
  harvest::Stats st;
  try {
    if (!quiet)
      std::fprintf(stderr, "create-dataset: %s, %s to %s, into %s%s\n", source.c_str(), opt.range.first.iso().c_str(),
                   opt.range.last.iso().c_str(), output.c_str(), opt.resume ? " (resuming)" : "");
    st = harvest::create_dataset(opt, cb);
  } catch (const std::invalid_argument& e) {
    if (tty && !quiet) std::fputc('\n', stderr);
    cli::error(e.what());
    return 2;
  } catch (const std::exception& e) {
    if (tty && !quiet) std::fputc('\n', stderr);
    cli::error(e.what());
    std::fprintf(stderr,
                 "create-dataset: stopped; the same command with --resume continues after the last finished "
                 "month (rows so far: %s.partial)\n",
                 output.c_str());
    return 1;
  }
  if (tty && !quiet) std::fputc('\n', stderr);
  std::fprintf(stderr,
               "create-dataset: wrote %zu records to %s (core %zu, non_core %zu, rejected %zu); dropped %zu without "
               "abstract, %zu duplicates, %zu bad records%s; %zu requests in %.1f s\n",
               st.kept(), output.c_str(), st.per_label[2], st.per_label[1], st.per_label[0], st.no_abstract,
               st.duplicates, st.bad,
               st.missing ? (", " + std::to_string(st.missing) + " announced but not delivered").c_str() : "",
               st.requests, st.seconds);
  return 0;
}

}  // namespace

INSPIRE_COMMAND_NAMED(create_dataset, "create-dataset",
                      "Gather labeled training data from INSPIRE (OpenSearch or the REST API) into JSON Lines",
                      run_create_dataset, 29);
