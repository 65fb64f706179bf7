# Generated files of the shipped types and of the bench type, shared by the import benchmarks
# (sourced: `. bench/generators.sh`). Each function writes ROWS rows to PATH: `gen_X ROWS PATH`.

# The bench type: 15 columns, ~190 bytes a row.
gen_bench() {
  python3 - "$1" "$2" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
grades = ["PK","KG"] + [f"{g:02}" for g in range(1, 13)]
with open(path, "w", newline="") as f:
    f.write("sisId,stateId,firstName,middleName,lastName,birthDate,grade,gender,email,phone,schoolId,homeroom,enrollYear,ell,language\r\n")
    for i in range(n):
        f.write(f"S{i:08},ST{i*7:09},First{i % 5003},M,Last{i % 7919},20{10 + i % 9:02}-{1 + i % 12:02}-{1 + i % 28:02},"
                f"{grades[i % 14]},{'FMX'[i % 3]},student{i}@district.example.org,555-{i % 10000:04}-{i % 997:03},"
                f"SCH{i % 50:03},R{i % 40},{2015 + i % 10},{'true' if i % 7 == 0 else 'false'},English\r\n")
PY
}

# The `students` preset's columns (presets/visitor-aware.toml): every student a person.
gen_students() {
  python3 - "$1" "$2" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
grades = ["PK","KG"] + [f"{g:02}" for g in range(1, 13)]
with open(path, "w", newline="") as f:
    f.write("sisId,firstName,lastName,middleName,grade,birthDate,schoolId,email,phone\r\n")
    for i in range(n):
        f.write(f"S{i:08},First{i % 5003},Last{i % 7919},M,{grades[i % 14]},20{10 + i % 9:02}-{1 + i % 12:02}-{1 + i % 28:02},"
                f"SCH{i % 50:03},student{i}@district.example.org,555-{i % 10000:04}-{i % 997:03}\r\n")
PY
}

# The `guardians` preset (presets/classtag-guardians.toml): two guardians per student of the
# first ROWS/2 students, each guardian shared by two siblings (one row per guardian and
# student), guardian ids scattered as an SIS hands them out (not in student order).
gen_guardians() {
  python3 - "$1" "$2" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w", newline="") as f:
    f.write("guardianSisId,studentSisId,firstName,lastName,email,phone,language\r\n")
    for i in range(n):
        student, parent = i // 2, i % 2
        g = 2 * (student // 2) + parent
        gid = (g * 2654435761) % 4294967296
        f.write(f"G{gid:010},S{student:08},Parent{g % 4999},Last{(student // 2) % 7919},"
                f"parent{g}@home.example.net,555-{g % 10000:04}-{g % 991:03},{'Spanish' if g % 5 == 0 else 'English'}\r\n")
PY
}
