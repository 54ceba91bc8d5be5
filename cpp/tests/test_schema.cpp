// The schema's tile code and column lists (cpp/core/schema.hpp).
#include <doctest/doctest.h>

#include <set>
#include <string>

#include "batch.hpp"
#include "schema.hpp"

TEST_CASE("the tile code round-trips every kind and owner") {
  for (uint8_t kind = grl::kPlain; kind <= grl::kGeneral; ++kind) {
    for (int16_t owner = grl::kNeutral; owner < grl::kMaxPlayers; ++owner) {
      const uint8_t code = grl::tile_code(kind, owner);
      CHECK(grl::tile_kind(code) == kind);
      CHECK(grl::tile_owner(code) == owner);
    }
  }
}

TEST_CASE("the visitors walk every listed column of a batch once, in order") {
  grl::RawBatch raw;
  std::string names;
  const auto collect = [&names](auto info, auto&) { names += std::string(info.name) + " "; };
  grl::for_each_record_column(raw, collect);
  CHECK(names == "sequence game_id player_id tick action reward legal terminated truncated ");
  std::set<std::string> tables;
  grl::for_each_state_table(raw, [&tables](auto info, auto& column) {
    tables.insert(info.name);
    column.push_back(1);
  });
  CHECK(tables == std::set<std::string>{"state_kind", "state_owner", "state_army"});
  CHECK((raw.state_kind.size() == 1 && raw.state_owner.size() == 1 && raw.state_army.size() == 1));
  grl::clear_rows(raw, 2, 2);
  CHECK((raw.state_kind.empty() && raw.height == 2));
  CHECK(std::size(grl::kRecordColumns) == 9);
  CHECK(grl::kObservationChannels == 9);
}
