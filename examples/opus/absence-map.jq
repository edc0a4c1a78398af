# examples/opus/absence-map.jq — maps one <Fravaer> record of an OPUS-style nightly absence
# export (examples/opus/fravaer-sample.xml; the format is invented — KMD OPUS publishes no
# contract) to the event the staff connector emits for the same change (docs/plugins/staff.md):
# the same types, the same id scheme (hr-absence-<id>-v<version>[-cancel]) and the same data
# fields, so routes/municipal.yaml takes them unchanged. Give it to a filedrop instance as
# `map:` (the option takes the program's text: paste it, see docs/plugins/staff.md).
# Unlike the staff connector it sets no `subject` (no pseudonym key in jq) and trusts the
# export's `dage` for a holiday's days.
.aendret as $changed
| (.kode | if . then ascii_upcase else null end) as $code
| (.version | tonumber) as $v
| (.handling // "opret") as $action
| ({absence: .id, version: $v, employment: .medarbejder, employee_cpr: .cpr,
    department: .institution, code: $code, from: .fra, to: .til}
   + (if .timer then {hours: (.timer | split(",") | join(".") | tonumber)} else {} end)
   | with_entries(select(.value != null))) as $data
| if $action == "annuller" then
    {id: "hr-absence-\(.id)-v\($v)-cancel", type: "staff.absence.cancelled", data: $data}
  elif $code == "FERIE" or $code == "FERIEFRI" then
    ((.dage | split(",") | join(".") | tonumber) as $days
     | {id: "hr-absence-\(.id)-v\($v)", type: "staff.holiday.registered",
        data: ($data + {days: $days,
                        main_holiday: ($code == "FERIE" and $days >= 15
                                       and .fra[0:4] == .til[0:4]
                                       and .fra[5:10] >= "05-01" and .til[5:10] <= "09-30")})})
  else
    {id: "hr-absence-\(.id)-v\($v)", type: "staff.absence.registered", data: $data}
  end
| . + (if $changed then {time: $changed} else {} end)
