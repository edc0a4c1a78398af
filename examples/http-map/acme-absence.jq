# examples/http-map/acme-absence.jq — the jq map of an http ingress's map_paths item
# (docs/plugins/http.md, "Vendor JSON"): Acme's daycare app POSTs its own absence notices
# (examples/http-map/acme-absence.json; Acme and its format are invented) and this program
# makes each one the catalogue's child.absence.reported (docs/message-types.md). The source
# is not the program's to choose: map_paths fixes it. One notice gives one event; a body
# {"notices": [...]} gives an array of them. $client is the posting token client's name.
def days: ((.til | strptime("%Y-%m-%d") | mktime) - (.fra | strptime("%Y-%m-%d") | mktime))
          / 86400 + 1;
def absence:
  {id: "acme-\(.ref)",
   type: "child.absence.reported",
   subject: "child:\(.barn.id)",
   data: ({reason: ({"syg": "sick", "ferie": "holiday", "fri": "day-off"}[.fravaer]
                    // "other"),
           from: .fra, to: .til, days: days, institution: .institution}
          + (if .kommentar then {comment: .kommentar} else {} end))};
if has("notices") then [.notices[] | absence] else absence end
