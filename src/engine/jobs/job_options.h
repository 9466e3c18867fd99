#pragma once
// The option types several jobs take, with the lists their --help shows, gathered for the CLI that fills them:
// the CLI includes jobs/ and common/ headers only (tests/layout/check_include_graph.py), and these types live
// in the engine libraries the jobs use.
//   LoadOptions, format_names()                 checkpoint/: --format --arch --num-heads --img-size --dtype ...
//   DatasetSpec, dataset_format_names()         data/: --data --split --limit --seed
//   analysis_dataset_help()                     data/: --data of attn-stats and embed (adds filelist:PATH)
//   DistOptions, resolve_dist_options(),        distributed/: --rank --world-size --master --dist-timeout,
//   default_threads_per_process()               and the thread count of one rank among those of this host
//   PreprocessSettings, parse_triplet()         jobs/: --mean --std --resize --crop --interpolation
#include "checkpoint/key_maps.h"
#include "checkpoint/loader.h"
#include "data/dataset.h"
#include "data/file_list_dataset.h"
#include "distributed/process_group.h"
#include "jobs/preprocess_settings.h"
