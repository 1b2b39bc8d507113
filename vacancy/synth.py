"""Synthetic vacancy titles over the notebook's area labels (the user's real file is private).

    python -m vacancy.synth --rows 3000 --seed 0 --out data/vacancies.csv

A title carries several areas when its wording does ("Data Engineer / ML Engineer"). Deterministic
for a given seed.
"""
from __future__ import annotations

import argparse
import csv
import random

# area -> role nouns that signal it
ROLES = {
    "admin": ["System Administrator", "Sysadmin", "Linux Administrator", "Windows Administrator",
              "Database Administrator", "DBA", "1C Administrator"],
    "analyst": ["Business Analyst", "Data Analyst", "System Analyst", "BI Analyst",
                "Product Analyst", "Malware Analyst", "Financial Analyst"],
    "architector": ["Solution Architect", "Software Architect", "Cloud Architect",
                    "Enterprise Architect", "Data Architect"],
    "assistant": ["Assistant", "Office Assistant", "Personal Assistant", "Executive Assistant"],
    "consultant": ["Consultant", "SAP Consultant", "IT Consultant", "1C Consultant",
                   "Salesforce Consultant"],
    "coord": ["Project Coordinator", "Coordinator", "Event Coordinator", "Delivery Coordinator"],
    "data_engineer": ["Data Engineer", "ETL Developer", "Big Data Engineer", "DWH Engineer"],
    "data_scientist": ["Data Scientist", "Research Scientist", "Data Science Specialist"],
    "designer": ["UI/UX Designer", "Graphic Designer", "Product Designer", "Web Designer",
                 "Motion Designer", "Game Designer"],
    "devel_metodolog": ["Scrum Master", "Agile Coach", "Development Methodologist",
                        "Process Engineer"],
    "devops": ["DevOps Engineer", "Site Reliability Engineer", "SRE", "Release Engineer",
               "Platform Engineer", "Build Engineer"],
    "director": ["CTO", "CIO", "Director of Engineering", "IT Director", "Head of Development"],
    "doc_writer": ["Technical Writer", "Documentation Specialist", "Copywriter", "Content Writer"],
    "it_security": ["Security Engineer", "Pentester", "Information Security Specialist",
                    "SOC Analyst", "Penetration Tester", "Security"],
    "machine_learner": ["ML Engineer", "Machine Learning Engineer", "Computer Vision Engineer",
                        "NLP Engineer", "Deep Learning Engineer"],
    "manager": ["Project Manager", "Product Manager", "Account Manager", "Delivery Manager",
                "Engineering Manager", "Team Lead"],
    "networks": ["Network Engineer", "Network Administrator", "Telecom Engineer",
                 "Cisco Engineer"],
    "owner": ["Product Owner", "Business Owner", "Service Owner"],
    "programmer": ["Developer", "Software Engineer", "Programmer", "Backend Developer",
                   "Frontend Developer", "Full Stack Developer", "Mobile Developer"],
    "qa": ["QA Engineer", "Tester", "QA Automation Engineer", "Test Engineer", "Manual QA"],
    "hr": ["HR Manager", "Recruiter", "IT Recruiter", "HR Business Partner", "Sourcer"],
    "sales": ["Sales Manager", "Business Development Manager", "Account Executive",
              "Sales Representative"],
    "marketing": ["Marketing Manager", "SEO Specialist", "SMM Manager", "Digital Marketer"],
    "support": ["Support Engineer", "Helpdesk Specialist", "Technical Support",
                "Service Desk Agent"],
}
# roles whose wording signals a second area
IMPLIED = {"Malware Analyst": ["it_security"], "SOC Analyst": ["analyst"],
           "HR Manager": ["manager"], "Sales Manager": ["manager"],
           "Marketing Manager": ["manager"],
           "SAP Consultant": ["programmer"], "1C Administrator": ["programmer"]}
TECH = {"programmer": ["Java", "Python", "C++", "C#", ".NET", "Go", "PHP", "Node.js", "React",
                       "iOS", "Android", "Ruby", "Scala", "Kotlin", "1C"],
        "qa": ["Selenium", "Java", "Python", "Mobile", "API"],
        "devops": ["AWS", "Kubernetes", "Azure", "GCP"],
        "data_engineer": ["Spark", "Hadoop", "Airflow", "SQL"],
        "machine_learner": ["PyTorch", "TensorFlow", "LLM"],
        "admin": ["Linux", "Windows", "Oracle", "PostgreSQL"]}
SENIORITY = ["Junior", "Middle", "Senior", "Lead", "Principal", "Trainee", "Intern", "Head",
             "Chief"]
COMPANIES = ["Imunify Security", "CloudLinux", "EPAM", "SoftServe", "GlobalLogic", "Ajax Systems",
             "Grammarly", "MacPaw", "Ciklum", "Luxoft", "Yandex", "Kaspersky", "Sber"]
SUFFIXES = ["(remote)", "(Kyiv)", "(Berlin)", "(part-time)", "- remote", "(relocation)",
            "(contract)", "(full-time)"]


def typo(rng: random.Random, word: str) -> str:
    if len(word) < 5:
        return word
    i = rng.randrange(1, len(word) - 1)
    return word[:i] + word[i + 1] + word[i] + word[i + 2:] if rng.random() < 0.5 \
        else word[:i] + word[i + 1:]


def make_title(rng: random.Random) -> tuple[str, list[str]]:
    n_areas = rng.choices([1, 2, 3], weights=[80, 17, 3])[0]
    areas = rng.sample(sorted(ROLES), n_areas)
    parts, labels = [], set(areas)
    for area in areas:
        role = rng.choice(ROLES[area])
        labels.update(IMPLIED.get(role, []))
        if area in TECH and rng.random() < 0.6:
            role = f"{rng.choice(TECH[area])} {role}"
        parts.append(role)
    title = rng.choice([" / ", " & ", ", ", " and "]).join(parts)
    if rng.random() < 0.5:
        title = f"{rng.choice(SENIORITY)} {title}"
    if rng.random() < 0.25:
        title = f"{title} {rng.choice(['at', 'for', '-', 'in'])} {rng.choice(COMPANIES)}"
    if rng.random() < 0.2:
        title = f"{title} {rng.choice(SUFFIXES)}"
    if rng.random() < 0.05:
        words = title.split()
        j = rng.randrange(len(words))
        words[j] = typo(rng, words[j])
        title = " ".join(words)
    case = rng.random()
    if case < 0.1:
        title = title.upper()
    elif case < 0.2:
        title = title.lower()
    return title, sorted(labels)


def generate(rows: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [(title, " ".join(labels)) for title, labels in (make_title(rng) for _ in range(rows))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    with open(args.out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["title", "area"])
        writer.writerows(generate(args.rows, args.seed))


if __name__ == "__main__":
    main()
