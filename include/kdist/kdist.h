#pragma once
// Everything kdist offers. Narrower headers compile faster; include them where it matters.
#include <kdist/checkpoint.h>
#include <kdist/comm.h>
#include <kdist/data.h>
#include <kdist/distribution.h>
#include <kdist/dtensor.h>
#include <kdist/job.h>
#include <kdist/layout.h>
#include <kdist/layout_map.h>
#include <kdist/mesh.h>
#include <kdist/nn.h>
#include <kdist/path_adapter.h>
#include <kdist/runtime.h>
#include <kdist/sync.h>
#include <kdist/version.h>
