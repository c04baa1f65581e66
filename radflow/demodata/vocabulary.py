"""Sentences of the synthetic reports per body system: findings and the impression each implies."""

from __future__ import annotations

from typing import Any

from kernel.codes import CLASSIFIED_BODY_SYSTEMS

# (findings sentence, impression phrase); {s} is a side, {n} a size in mm.
ZH_SENTENCES: dict[str, dict[str, Any]] = {  # system -> exam names, sentences, normal wording
    "chest": {
        "exam": [("CT0101", "胸部CT平扫"), ("CT0102", "胸部CT增强")],
        "abnormal": [
            ("{s}肺上叶见磨玻璃结节影，大小约{n}mm，边界清楚。", "{s}肺上叶磨玻璃结节，建议随访复查"),
            ("{s}肺下叶见斑片状高密度影，边缘模糊。", "{s}肺下叶炎症"),
            ("{s}侧胸腔见弧形液体密度影。", "{s}侧胸腔积液"),
            ("{s}肺中野见条索状影。", "{s}肺纤维灶"),
            ("纵隔内见肿大淋巴结，短径约{n}mm。", "纵隔淋巴结肿大"),
            ("{s}肺门区见软组织肿块，大小约{n}mm，边缘分叶。", "{s}肺门占位，考虑肺癌可能"),
        ],
        "normal": ["双肺纹理清晰，走行自然。", "气管及主支气管通畅。", "纵隔内未见肿大淋巴结。", "心影大小形态未见异常。"],
        "normal_impression": "胸部CT平扫未见明显异常",
    },
    "abdomen": {
        "exam": [("CT0201", "上腹部CT增强"), ("MR0202", "肝脏MRI平扫")],
        "abnormal": [
            ("肝{s}叶见类圆形低密度影，大小约{n}mm，增强后未见强化。", "肝{s}叶囊肿"),
            ("胆囊内见结节状高密度影，大小约{n}mm。", "胆囊结石"),
            ("肝实质密度弥漫性减低。", "脂肪肝"),
            ("{s}肾见类圆形低密度影，大小约{n}mm。", "{s}肾囊肿"),
            ("胰腺体积增大，周围脂肪间隙模糊。", "急性胰腺炎"),
            ("肝{s}叶见稍低密度肿块，大小约{n}mm，动脉期明显强化。", "肝{s}叶占位，考虑肝癌可能"),
        ],
        "normal": ["肝脏大小形态正常，实质密度均匀。", "胆囊不大，壁不厚。", "胰腺及脾脏未见异常。", "双肾形态位置正常。"],
        "normal_impression": "上腹部未见明显异常",
    },
    "musculoskeletal": {
        "exam": [("MR0301", "腰椎MRI平扫"), ("MR0302", "膝关节MRI平扫")],
        "abnormal": [
            ("L4/5椎间盘向{s}后方突出，硬膜囊受压。", "L4/5椎间盘突出"),
            ("L5/S1椎间盘向后膨出。", "L5/S1椎间盘膨出"),
            ("腰椎椎体边缘骨质增生。", "腰椎退行性变"),
            ("{s}膝关节内侧半月板后角见线样高信号，达关节面。", "{s}膝内侧半月板撕裂"),
            ("{s}膝关节腔内见少量液体信号。", "{s}膝关节积液"),
            ("{s}膝前交叉韧带连续性中断。", "{s}膝前交叉韧带断裂"),
        ],
        "normal": ["腰椎生理曲度存在。", "椎体信号未见异常。", "关节间隙未见狭窄。", "周围软组织未见异常。"],
        "normal_impression": "未见明显异常",
    },
    "head": {
        "exam": [("CT0401", "颅脑CT平扫"), ("MR0402", "颅脑MRI平扫")],
        "abnormal": [
            ("{s}侧基底节区见斑点状低密度影，大小约{n}mm。", "{s}侧基底节区腔隙性脑梗死"),
            ("双侧侧脑室旁白质见斑片状低密度影。", "脑白质脱髓鞘改变"),
            ("{s}侧额叶见片状高密度影，周围见水肿带。", "{s}侧额叶脑出血"),
            ("脑沟脑裂增宽加深。", "脑萎缩"),
            ("{s}侧颞部颅板下见新月形高密度影。", "{s}侧硬膜下血肿"),
            ("{s}侧小脑半球见类圆形肿块，大小约{n}mm。", "{s}侧小脑占位"),
        ],
        "normal": ["脑实质密度未见异常。", "脑室系统未见扩大。", "中线结构居中。", "颅骨未见骨折。"],
        "normal_impression": "颅脑CT平扫未见明显异常",
    },
    "maxillofacial_neck": {
        "exam": [("CT0501", "颈部CT增强"), ("CT0502", "鼻窦CT平扫")],
        "abnormal": [
            ("甲状腺{s}叶见低密度结节，大小约{n}mm。", "甲状腺{s}叶结节"),
            ("{s}侧上颌窦黏膜增厚。", "{s}侧上颌窦炎"),
            ("{s}侧颈部见多发肿大淋巴结，最大短径约{n}mm。", "{s}侧颈部淋巴结肿大"),
            ("鼻中隔向{s}侧偏曲。", "鼻中隔偏曲"),
            ("{s}侧腮腺内见类圆形结节，大小约{n}mm。", "{s}侧腮腺结节，多形性腺瘤可能"),
            ("双侧筛窦见软组织密度影。", "筛窦炎"),
        ],
        "normal": ["甲状腺大小形态正常。", "咽腔未见狭窄。", "双侧颈部未见肿大淋巴结。", "各鼻窦窦腔透亮。"],
        "normal_impression": "颈部未见明显异常",
    },
}

EN_SENTENCES: dict[str, dict[str, Any]] = {  # system -> exam names, sentences, normal wording
    "chest": {
        "exam": [("CTCH", "CT CHEST WITHOUT CONTRAST"), ("CTCHC", "CT CHEST WITH CONTRAST")],
        "abnormal": [
            ("There is a {n} mm ground-glass nodule in the {s} upper lobe.", "{s} upper lobe ground-glass nodule, follow-up recommended"),
            ("Patchy consolidation is seen in the {s} lower lobe.", "{s} lower lobe pneumonia"),
            ("There is a small {s} pleural effusion.", "Small {s} pleural effusion"),
            ("Linear opacity in the {s} midlung zone.", "{s} linear scarring"),
            ("Enlarged mediastinal lymph nodes measure up to {n} mm.", "Mediastinal lymphadenopathy"),
            ("A lobulated {n} mm mass is present in the {s} hilum.", "{s} hilar mass, concerning for malignancy"),
        ],
        "normal": ["The lungs are clear.", "The airways are patent.", "No mediastinal lymphadenopathy.", "Heart size is normal."],
        "normal_impression": "No acute cardiopulmonary abnormality",
    },
    "abdomen": {
        "exam": [("CTAP", "CT ABDOMEN PELVIS WITH CONTRAST"), ("MRLIV", "MRI LIVER")],
        "abnormal": [
            ("A {n} mm nonenhancing hypodense lesion in the {s} hepatic lobe.", "{s} hepatic lobe cyst"),
            ("A {n} mm calcified stone in the gallbladder.", "Cholelithiasis"),
            ("Diffuse decreased attenuation of the liver.", "Hepatic steatosis"),
            ("A {n} mm simple cyst in the {s} kidney.", "{s} renal cyst"),
            ("The pancreas is enlarged with peripancreatic fat stranding.", "Acute pancreatitis"),
            ("An arterially enhancing {n} mm mass in the {s} hepatic lobe.", "{s} hepatic mass, suspicious for hepatocellular carcinoma"),
        ],
        "normal": ["The liver is normal in size.", "The gallbladder is unremarkable.", "The pancreas and spleen are normal.", "The kidneys are normal."],
        "normal_impression": "No acute abdominal abnormality",
    },
    "musculoskeletal": {
        "exam": [("MRLS", "MRI LUMBAR SPINE"), ("MRKN", "MRI KNEE")],
        "abnormal": [
            ("At L4-5 there is a {s} paracentral disc protrusion compressing the thecal sac.", "L4-5 disc protrusion"),
            ("At L5-S1 there is a diffuse disc bulge.", "L5-S1 disc bulge"),
            ("Marginal osteophytes of the lumbar vertebrae.", "Lumbar spondylosis"),
            ("Linear signal reaching the articular surface of the {s} medial meniscus posterior horn.", "{s} medial meniscus tear"),
            ("Small joint effusion in the {s} knee.", "{s} knee effusion"),
            ("Discontinuity of the {s} anterior cruciate ligament.", "{s} anterior cruciate ligament tear"),
        ],
        "normal": ["Normal lumbar lordosis.", "Vertebral body signal is normal.", "Joint spaces are preserved.", "Soft tissues are unremarkable."],
        "normal_impression": "No significant abnormality",
    },
    "head": {
        "exam": [("CTHD", "CT HEAD WITHOUT CONTRAST"), ("MRBR", "MRI BRAIN")],
        "abnormal": [
            ("A {n} mm hypodensity in the {s} basal ganglia.", "{s} basal ganglia lacunar infarct"),
            ("Patchy periventricular white matter hypodensities.", "Chronic small vessel ischemic change"),
            ("Hyperdense hemorrhage in the {s} frontal lobe with surrounding edema.", "{s} frontal intraparenchymal hemorrhage"),
            ("Prominent sulci and ventricles.", "Cerebral atrophy"),
            ("Crescentic hyperdense collection along the {s} convexity.", "{s} subdural hematoma"),
            ("A {n} mm mass in the {s} cerebellar hemisphere.", "{s} cerebellar mass"),
        ],
        "normal": ["No intracranial hemorrhage.", "The ventricles are normal in size.", "No midline shift.", "The calvarium is intact."],
        "normal_impression": "No acute intracranial abnormality",
    },
    "maxillofacial_neck": {
        "exam": [("CTNK", "CT NECK WITH CONTRAST"), ("CTSN", "CT SINUS")],
        "abnormal": [
            ("A {n} mm hypodense nodule in the {s} thyroid lobe.", "{s} thyroid nodule"),
            ("Mucosal thickening of the {s} maxillary sinus.", "{s} maxillary sinusitis"),
            ("Multiple enlarged {s} cervical lymph nodes up to {n} mm.", "{s} cervical lymphadenopathy"),
            ("The nasal septum deviates to the {s}.", "Nasal septal deviation"),
            ("A {n} mm well-circumscribed nodule in the {s} parotid gland.", "{s} parotid nodule, possibly pleomorphic adenoma"),
            ("Opacification of the ethmoid air cells.", "Ethmoid sinusitis"),
        ],
        "normal": ["The thyroid is normal.", "The airway is patent.", "No cervical lymphadenopathy.", "The paranasal sinuses are clear."],
        "normal_impression": "No acute abnormality of the neck",
    },
}

# The demo writes reports of every classified system (an exam of no known system has no sentences).
assert set(ZH_SENTENCES) == set(EN_SENTENCES) == set(CLASSIFIED_BODY_SYSTEMS), "the demo vocabulary is kernel.codes.BodySystem"
