#!/usr/bin/env python3
"""Writes a generated district as OneRoster 1.2 packages: a bulk snapshot and a delta that
changes 1% of it, plus the bulk's CSV files unzipped (for the sqlite3 .import peer).

    bench/oneroster_district.py OUT_DIR [--schools 50 --students 50000 --teachers 3000
                                         --classes 20000 --enrollments 400000]
"""
import argparse, os, random, zipfile

FILES = ["academicSessions", "categories", "classes", "classResources", "courses", "courseResources",
         "demographics", "enrollments", "lineItemLearningObjectiveIds", "lineItems", "lineItemScoreScales",
         "orgs", "resources", "resultLearningObjectiveIds", "results", "resultScoreScales", "roles",
         "scoreScales", "userProfiles", "userResources", "users"]
HEAD = {
    "orgs": "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId",
    "academicSessions": "sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,schoolYear",
    "courses": "sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,orgSourcedId,subjects,subjectCodes",
    "classes": "sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,location,schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods",
    "users": "sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password,userMasterIdentifier,preferredGivenName,preferredMiddleName,preferredFamilyName,primaryOrgSourcedId,pronouns",
    "roles": "sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,orgSourcedId,userProfileSourcedId",
    "enrollments": "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,primary,beginDate,endDate",
}


def manifest(modes):
    lines = ["propertyName,value", "manifest.version,1.0", "oneroster.version,1.2"]
    lines += [f"file.{f},{modes.get(f, 'absent')}" for f in FILES]
    lines.append("source.systemName,bench")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--schools", type=int, default=50)
    p.add_argument("--students", type=int, default=50000)
    p.add_argument("--teachers", type=int, default=3000)
    p.add_argument("--classes", type=int, default=20000)
    p.add_argument("--enrollments", type=int, default=400000)
    a = p.parse_args()
    rnd = random.Random(7)
    os.makedirs(a.out, exist_ok=True)
    rows = {f: [] for f in HEAD}
    rows["orgs"].append("d1,,,Generated District,district,GD,")
    for s in range(a.schools):
        rows["orgs"].append(f"s{s},,,School {s},school,S{s:03},d1")
    rows["academicSessions"] += ["y2027,,,2026-2027,schoolYear,2026-08-15,2027-06-15,,2027",
                                 "fall,,,Fall,term,2026-08-15,2027-01-10,y2027,2027",
                                 "spring,,,Spring,term,2027-01-11,2027-06-15,y2027,2027"]
    courses = 10 * a.schools
    for c in range(courses):
        rows["courses"].append(f"c{c},,,y2027,Course {c},C{c},\"09,10\",s{c % a.schools},Math,")
    school_of_student = []
    for i in range(a.students):
        s = i % a.schools
        school_of_student.append(s)
        rows["users"].append(f"st{i},,,true,student{i},{{SIS:{i}}},Given{i},Family{i % 997},,ID{i},student{i}@example.org,,,,{9 + i % 4},,,,,,s{s},")
        rows["roles"].append(f"r-st{i},,,st{i},primary,student,,,s{s},")
    for t in range(a.teachers):
        s = t % a.schools
        rows["users"].append(f"t{t},,,true,teacher{t},,Teach{t},Er{t % 311},,T{t},teacher{t}@example.org,,555-010{t % 10},,,,,,,,s{s},")
        rows["roles"].append(f"r-t{t},,,t{t},primary,teacher,,,s{s},")
    per_class = max(1, a.enrollments // a.classes)
    students_by_school = [[] for _ in range(a.schools)]
    for i, s in enumerate(school_of_student):
        students_by_school[s].append(i)
    teachers_by_school = [[t for t in range(a.teachers) if t % a.schools == s] for s in range(a.schools)]
    n = 0
    for k in range(a.classes):
        s = k % a.schools
        term = "fall" if k % 2 else "spring"
        rows["classes"].append(f"k{k},,,Class {k},09,c{(k // a.schools) % 10 * a.schools + s},K{k},scheduled,Room {k % 40},s{s},{term},,,{k % 8 + 1}")
        t = rnd.choice(teachers_by_school[s])
        rows["enrollments"].append(f"e{n},,,k{k},s{s},t{t},teacher,true,,")
        n += 1
        for st in rnd.sample(students_by_school[s], per_class - 1):
            rows["enrollments"].append(f"e{n},,,k{k},s{s},st{st},student,false,,")
            n += 1
    csv_dir = os.path.join(a.out, "bulk")
    os.makedirs(csv_dir, exist_ok=True)
    with zipfile.ZipFile(os.path.join(a.out, "bulk.zip"), "w", zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        z.writestr("manifest.csv", manifest({f: "bulk" for f in HEAD}))
        for f, lines in rows.items():
            text = HEAD[f] + "\n" + "\n".join(lines) + "\n"
            z.writestr(f + ".csv", text)
            with open(os.path.join(csv_dir, f + ".csv"), "w") as out:
                out.write(text)
    # The delta: 1% of users renamed, 1% of enrollments dropped, 1% of classes moved rooms.
    stamp = "2026-11-22T08:00:00.000Z"
    delta = {}
    def pick(f):
        return rnd.sample(rows[f], len(rows[f]) // 100)
    delta["users"] = [",".join([l.split(",", 1)[0], "active", stamp] + l.split(",")[3:]).replace("Given", "Renamed", 1) for l in pick("users")]
    delta["enrollments"] = [",".join([l.split(",", 1)[0], "tobedeleted", stamp] + l.split(",")[3:]) for l in pick("enrollments")]
    delta["classes"] = [",".join([l.split(",", 1)[0], "active", stamp] + l.split(",")[3:]).replace("Room", "Lab", 1) for l in pick("classes")]
    with zipfile.ZipFile(os.path.join(a.out, "delta.zip"), "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.csv", manifest({f: "delta" for f in delta}))
        for f, lines in delta.items():
            z.writestr(f + ".csv", HEAD[f] + "\n" + "\n".join(lines) + "\n")
    total = sum(len(v) for v in rows.values())
    print(f"bulk: {total} rows ({', '.join(f'{k} {len(v)}' for k, v in rows.items())}); delta: {sum(len(v) for v in delta.values())} rows")


if __name__ == "__main__":
    main()
